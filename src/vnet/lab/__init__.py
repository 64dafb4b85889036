"""Labs: topology files made real (namespaces, switches, a controller) or simulated."""
