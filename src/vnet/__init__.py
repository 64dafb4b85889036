"""vnet: software-defined virtual networking.

The package is layered so that the core does no I/O:

    packet   <- pipeline <- datapath        (bytes in, decisions out)
    model    <- compiler <- controller      (intent in, flows out)

`packet` parses and builds wire formats; `pipeline` is the OpenFlow-style
match/action engine with its trace.  Shells (CLI, switch I/O, API) sit around.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
