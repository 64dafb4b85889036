"""BGP to the physical network: what chassis advertise (`config`) and the FRR speakers that do (`speaker`)."""
