"""qnn-profile-viewer text -> numbers. The samples follow the viewer's text format as QNN 2.x
prints it for ``qnn-net-run --profiling_level basic`` (layout and labels as published in QNN's
documentation and in users' logs of HTP and DSP runs); the numbers are made up."""

from __future__ import annotations

import pytest

from edgegate.errors import TargetError
from edgegate.targets.qnn_profile import parse_profile_viewer

HTP_CONTEXT = """\
Input Log File Location: output/qnn-profiling-data_0.log
Log File Created: Thu Mar 24 15:07:55 2022
Time Scale: 1e-06
Epoch Timestamp: 1648130875669710 Steady Clock Timestamp: 1112519815079
Generated using:
qnn-profile-viewer v2.20.0.240223
qnn-net-run        v2.20.0.240223
Backend            v2.20.0.240223

Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:
------------------------------------------------------------
Init Stats:
-----------
    NetRun: 171679 us
    Backend (RPC (load binary) time): 2001 us
    Backend (QNN accelerator (load binary) time): 1800 us
    Backend (Accelerator (load binary) time): 1750 us
    Backend (QNN (load binary) time): 150000 us

Compose Graphs Stats:
--------------
    NetRun: 95902 us

Finalize Stats:
---------------
Graph 0 (mobilenet):
    NetRun: 76129 us
    Backend (RPC (finalize) time): 2315 us
    Backend (QNN accelerator (finalize) time): 2104 us
    Backend (Accelerator (finalize) time): 1982 us
    Backend (QNN (finalize) time): 75945 us

De-Init Stats:
--------------
    NetRun: 15810 us
    Backend (RPC (deinit) time): 1224 us
    Backend (QNN Accelerator (deinit) time): 966 us
    Backend (Accelerator (deinit) time): 934 us
    Backend (QNN (deinit) time): 15801 us

Execute Stats (Average):
------------------------
Total Inference Time:
---------------------
Graph 0 (mobilenet):
    NetRun: 2952 us
    Backend (Number of HVX threads used): 4 count
    Backend (RPC (execute) time): 2920 us
    Backend (QNN accelerator (execute) time): 2600 us
    Backend (Accelerator (execute) time): 2492 us
    Backend (Accelerator (execute) time (cycles)): 2990400 cycles
    Backend (QNN (execute) time): 2949 us

Execute Stats (Min):
------------------------
Total Inference Time:
---------------------
Graph 0 (mobilenet):
    NetRun: 2801 us
    Backend (Number of HVX threads used): 4 count
    Backend (RPC (execute) time): 2770 us
    Backend (QNN accelerator (execute) time): 2480 us
    Backend (Accelerator (execute) time): 2390 us
    Backend (QNN (execute) time): 2799 us

Execute Stats (Max):
------------------------
Total Inference Time:
---------------------
Graph 0 (mobilenet):
    NetRun: 4410 us
    Backend (Number of HVX threads used): 4 count
    Backend (RPC (execute) time): 4380 us
    Backend (QNN accelerator (execute) time): 3100 us
    Backend (Accelerator (execute) time): 2990 us
    Backend (QNN (execute) time): 4405 us

Execute Stats (Overall):
------------------------
    NetRun IPS (includes IO and misc. time): 214.8888 inf/sec
"""

# A DSP backend run (Hexagon v66, model library): no HVX thread count, two graphs in one model,
# and an older viewer's "NetRun IPS:" label with the overall stats before the averages.
DSP_TWO_GRAPHS = """\
Input Log File Location: /data/edgegate/output/qnn-profiling-data.log
Log File Created: Mon Jan  8 10:01:02 2024
Time Scale: 1e-06
Generated using:
qnn-profile-viewer v2.14.0.230828
qnn-net-run        v2.14.0.230828
Backend            v2.14.0.230828

Qnn Init/Prepare/Finalize/De-Init/Execute/Lib-Load Statistics:
------------------------------------------------------------
Init Stats:
-----------
    NetRun: 52011 us

Finalize Stats:
---------------
Graph 0 (pnet):
    NetRun: 30100 us
Graph 1 (rnet):
    NetRun: 20100 us

De-Init Stats:
--------------
    NetRun: 9000 us

Execute Stats (Overall):
------------------------
    NetRun IPS: 120.5000 inf/sec

Execute Stats (Average):
------------------------
Total Inference Time:
---------------------
Graph 0 (pnet):
    NetRun: 5000 us
    Backend (RPC (execute) time): 4800 us
    Backend (QNN accelerator (execute) time): 4100 us
    Backend (Accelerator (execute) time): 4000 us
Graph 1 (rnet):
    NetRun: 3000 us
    Backend (RPC (execute) time): 2900 us
    Backend (QNN accelerator (execute) time): 2500 us
    Backend (Accelerator (execute) time): 2400 us
"""


def test_htp_context_run_every_section() -> None:
    p = parse_profile_viewer(HTP_CONTEXT)
    assert p.versions == {"qnn-profile-viewer": "v2.20.0.240223", "qnn-net-run": "v2.20.0.240223",
                          "Backend": "v2.20.0.240223"}
    assert p.header["Time Scale"] == "1e-06"
    assert p.init_ms() == pytest.approx(171.679)
    assert p.graphs("Execute (Average)") == ["0 (mobilenet)"]
    assert p.value("Execute (Average)", "Backend (Number of HVX threads used)").value == 4
    cycles = p.value("Execute (Average)", "Backend (Accelerator (execute) time (cycles))")
    assert (cycles.value, cycles.unit, cycles.ms) == (2990400, "cycles", None)  # not a time
    s = p.summary()
    assert s["netrun_avg_ms"] == pytest.approx(2.952)
    assert (s["netrun_min_ms"], s["netrun_max_ms"]) == (pytest.approx(2.801), pytest.approx(4.410))
    assert s["accelerator_avg_ms"] == pytest.approx(2.492)
    assert s["qnn_accelerator_min_ms"] == pytest.approx(2.480)
    assert s["rpc_max_ms"] == pytest.approx(4.380)
    assert s["qnn_avg_ms"] == pytest.approx(2.949)
    assert s["finalize_ms"] == pytest.approx(76.129)
    assert s["deinit_ms"] == pytest.approx(15.810)
    assert s["ips"] == pytest.approx(214.8888)
    assert p.value("Compose Graphs", "NetRun").ms == pytest.approx(95.902)


def test_dsp_run_sums_graphs_and_tolerates_missing_lines() -> None:
    p = parse_profile_viewer(DSP_TWO_GRAPHS)
    s = p.summary()
    assert s["netrun_avg_ms"] == pytest.approx(8.0)  # one inference runs both graphs
    assert s["accelerator_avg_ms"] == pytest.approx(6.4)
    assert s["rpc_avg_ms"] == pytest.approx(7.7)
    assert s["netrun_min_ms"] is None and s["qnn_avg_ms"] is None  # this log has neither
    assert s["finalize_ms"] == pytest.approx(50.2)
    assert s["ips"] == pytest.approx(120.5)
    assert p.value("Execute (Average)", "NetRun", graph="1 (rnet)").value == 3000


def test_text_without_execute_stats_is_an_error() -> None:
    with pytest.raises(TargetError, match="no 'Execute Stats \\(Average\\)' NetRun time: ERROR: bad log"):
        parse_profile_viewer("ERROR: bad log\nsomething else\n")
