"""The embedded local stack and the demo: SpillWatch on one machine with nothing but pip.

- ``stack.py``: a Kafka-protocol broker (Tansu) and Redis (Valkey) on loopback, in-process or
  daemonised (``spillwatch stack up|down|status``);
- ``demo.py``: ``spillwatch demo``, the whole pipeline on that stack and the bundled clips;
- ``commands.py``: their command-line registration.

Development, tests, CI, benchmarks and ``replay --local`` use it; sites run Apache Kafka and Redis
(deploy/). No stage imports this package at run time.
"""
