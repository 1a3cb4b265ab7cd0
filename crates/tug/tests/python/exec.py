"""The official Kubernetes Python client's interactive exec against a running pod: stdin in,
stdout and stderr out, line by line, through the WebSocket channel protocol, and the exit
code at the end.

Run by crates/tug/tests/agent/streams.rs with KUBECONFIG set; exits non-zero on failure."""

import sys

from kubernetes import client, config
from kubernetes.stream import stream

config.load_kube_config()
v1 = client.CoreV1Api()
pod = sys.argv[1]

# A shell fed line by line: each answer read back before the next line is written.
shell = stream(v1.connect_get_namespaced_pod_exec, pod, "default", command=["sh"],
               stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
for n in range(3):
    shell.write_stdin(f"echo answer-$(({n}*7))\n")
    line = shell.readline_stdout(timeout=10)
    assert line == f"answer-{n * 7}", (n, line)
shell.write_stdin("echo to-stderr >&2\n")
err = shell.readline_stderr(timeout=10)
assert err == "to-stderr", err
shell.write_stdin("exit 3\n")
shell.run_forever(timeout=10)
assert shell.returncode == 3, shell.returncode
shell.close()

# cat echoes what it is fed while the session stays open.
cat = stream(v1.connect_get_namespaced_pod_exec, pod, "default", command=["cat"],
             stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
cat.write_stdin("one\ntwo\n")
got = [cat.readline_stdout(timeout=10), cat.readline_stdout(timeout=10)]
assert got == ["one", "two"], got
cat.close()
print("python exec: ok")
