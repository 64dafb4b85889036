"""Test helpers others can use too: namespaces, veth pairs, a switch process."""
