"""SCADA connectors: control-system points in, `scada_signal` events out.

    source (IEC 104, DNP3, OPC UA, MQTT) --PointUpdate--> points.Mapper --ScadaSignal--> `scada`

`points` is pure (thresholds, hysteresis, de-duplication by point state and source time);
`sources/` hold one adapter per protocol; `runner` supervises them (reconnect with backoff,
`scada_source_lost` alerts) and publishes to the broker.
"""
