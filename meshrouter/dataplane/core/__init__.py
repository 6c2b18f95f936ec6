"""Sans-IO datapath cores: flow values, the VNI layout, the desired flow table,
table deltas and a packet evaluator.  No trio, no sockets, no OVS here."""
