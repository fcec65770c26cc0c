"""The bad-input suite's verdict per case (pure logic; the suite itself runs in test_faults)."""

from reproduce_vllm_lmcache.experiments.bad_input import ZMQ_CASES, Outcome


def test_a_case_is_ok_only_when_the_server_still_serves_and_says_so() -> None:
    assert Outcome("vllm", "body not JSON", "400 ...", True, "200 ").ok
    dead_but_green = Outcome("lmcache", "ZMQ: one frame", "no reply", False, "200 {healthy}")
    assert not dead_but_green.ok and dead_but_green.lying_health
    dead_and_red = Outcome("lmcache", "ZMQ: one frame", "no reply", False, "503 unhealthy")
    assert not dead_and_red.ok and not dead_and_red.lying_health
    assert not Outcome("vllm", "x", "400", True, "no answer (ConnectionError)").ok
    assert Outcome("vllm", "x", "400", True, "200").as_dict()["ok"] is True


def test_the_loop_killing_message_goes_last() -> None:
    """Every other ZMQ case must meet a serving server on pristine LMCache."""
    assert ZMQ_CASES[-1][1] == [b"hello"]
    assert all(len(frames) >= 2 for _, frames in ZMQ_CASES[:-1])
