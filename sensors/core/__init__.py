"""The pure engine: routing, correlation, trigger kinds, timers, filters, mapping,
schedule maths and wire records. Data and a clock in, decisions out; no I/O."""
