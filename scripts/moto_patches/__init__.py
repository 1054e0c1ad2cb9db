"""Small additions to moto 5.1.22 for calls real AWS has and the pinned moto lacks, and fixes where
it answers otherwise than AWS.

Each module adds what one service misses, written as an upstream fix would be: on moto's own
backend state, answering through moto's own serializer (so the XML is shaped by botocore's model
of the real API, as AWS shapes it). `apply()` installs them all; scripts/moto_server.py calls it
before the app is created. See docs/operations.md, "The local emulator".
"""

from . import cloudwatch, ecs, elasticache, logs


def apply() -> None:
    """Install every patch (idempotent)."""
    cloudwatch.apply()
    ecs.apply()
    elasticache.apply()
    logs.apply()
