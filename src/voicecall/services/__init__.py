"""Services: the use cases that drive the domain through its ports."""
