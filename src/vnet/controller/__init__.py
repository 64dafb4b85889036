"""The controller: northbound service, reconciler, southbound sessions, drift."""
