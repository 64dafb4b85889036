"""Wire formats, pure: bytes in, fields out.

One protocol per module, each opening with its RFC and header diagram.  Every
parser raises only `DecodeError`; `flowkey.extract` and `decode.decode` never
raise at all.
"""

from .decode import Decoded, decode
from .errors import DecodeError, Reason
from .flowkey import FIELDS, TunnelInfo, extract, make_key

__all__ = [
    "FIELDS",
    "DecodeError",
    "Decoded",
    "Reason",
    "TunnelInfo",
    "decode",
    "extract",
    "make_key",
]
