"""Jepsen-style campaigns: a cluster, clients and a nemesis under one generator.

- generator.py: pure generator combinators (which op runs next, on which thread);
- scheduler.py: runs a generator on trio tasks, one process per thread at a time, and
  records the history (recorder.py);
- workloads.py: the queue and log workloads, their native-client processes and checkers;
  consumer_workload.py: the consumer-group workload, built on them;
- nemesis.py: fault ops and their schedule, carried out through a `Faults` interface;
- processes.py + net_proxy.py: `Faults` for real broker processes behind per-link proxies;
- runner.py: one campaign from cluster start to report; outputs.py, report.py, svg.py,
  junit.py: the files a run leaves; cli.py: `replog campaign` and `replog report`.

Only processes.py, workloads.py, consumer_workload.py and runner.py touch impl/; the
rest works on plain data, so a simulated cluster can run the same generators, scheduler
and nemesis.
"""
