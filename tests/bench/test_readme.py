import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one():
    readme = (REPO / "README.md").read_text()
    setup = readme.split("## Set up")[1].split("## Use")[0]
    commands = re.findall(r"```bash\n(.*?)\n```", setup, flags=re.S)
    assert len(commands) == 2
    run_cmd, test_cmd = commands
    assert run_cmd.endswith("segbench run") and "pip install torch==2.13.0" in run_cmd
    assert test_cmd.endswith("pytest")
    ci = (REPO / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()
