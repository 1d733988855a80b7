"""scripts/bench_sb_scale.py's parts: what K agents cost the Southbound DB.

- worker.py: a process hosting several agents of one kind (stdlib only at the top: it also
  runs under neutron's virtualenv, by its file path);
- driver.py: starting workers, metering the servers, writing as ovn-controllers would;
- phases.py: load, churn, liveness, reconnect, the hosting series, memory by cloud size;
- report.py: the table and the projection, pure.
"""
