"""`affectvlm app`: which app it runs and which settings it passes (the launch itself: tests/test_install.py)."""
import shlex

import pytest

from affectvlm import applaunch


def _command(capsys, monkeypatch, tmp_path, *argv, env=None):
    monkeypatch.chdir(tmp_path)  # no .streamlit/config.toml of the user's here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for k in [k for k in __import__("os").environ if k.startswith("STREAMLIT_")]:
        monkeypatch.delenv(k)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    assert applaunch.main([*argv, "--print-command"]) == 0
    return shlex.split(capsys.readouterr().out)


def test_the_apps_settings_give_way_to_the_users(capsys, monkeypatch, tmp_path):
    cmd = _command(capsys, monkeypatch, tmp_path)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("app.py")
    assert cmd[cmd.index("--server.headless") + 1] == "true" and cmd[cmd.index("--theme.base") + 1] == "light"
    cmd = _command(capsys, monkeypatch, tmp_path, "--theme.base", "dark", "--port", "8601")
    assert cmd.count("--theme.base") == 1 and cmd[cmd.index("--theme.base") + 1] == "dark"
    assert cmd[cmd.index("--server.port") + 1] == "8601"
    cmd = _command(capsys, monkeypatch, tmp_path, env={"STREAMLIT_SERVER_MAX_UPLOAD_SIZE": "5"})
    assert "--server.maxUploadSize" not in cmd and "--server.headless" in cmd
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "config.toml").write_text('[theme]\nbase = "dark"\n')
    cmd = _command(capsys, monkeypatch, tmp_path)
    assert "--theme.base" not in cmd and "--theme.primaryColor" in cmd  # the user's own file says it


def test_arguments_that_are_not_streamlit_options_are_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv in (["foo"], ["--server.port", "8600", "foo"], ["-p", "1"]):
        with pytest.raises(SystemExit) as e:
            applaunch.main(argv)
        assert e.value.code == 2
        assert "unrecognized arguments" in capsys.readouterr().err


def test_a_stray_app_beside_an_installed_package_is_not_taken_for_a_checkout(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "affectvlm").mkdir(parents=True)
    (site / "app.py").write_text("print('not ours')")
    (site / "pages").mkdir()
    shared = site / "share" / "affectvlm" / "app"
    (shared / "pages").mkdir(parents=True)
    (shared / "app.py").write_text("")
    import affectvlm.installed as installed

    monkeypatch.setattr(applaunch, "__file__", str(site / "affectvlm" / "applaunch.py"))
    monkeypatch.setattr(installed, "__file__", str(site / "affectvlm" / "installed.py"))
    assert applaunch.find_app() == shared.resolve()
    (site / "pyproject.toml").write_text("")  # a checkout: its own app.py
    assert applaunch.find_app() == site.resolve()


def test_an_install_elsewhere_is_found_by_its_distributions_record(tmp_path, monkeypatch):
    """`pip install --prefix` (or a system pip whose data go under /usr/local) puts share/ where neither sys.prefix
    nor the package's folder says; the distribution's file record does."""
    import importlib.metadata as md
    from pathlib import PurePosixPath

    import affectvlm.installed as installed
    from affectvlm.model import specs

    prefix = tmp_path / "prefix"
    app = prefix / "share" / "affectvlm" / "app"
    (app / "pages").mkdir(parents=True)
    (app / "app.py").write_text("")
    weights = prefix / "share" / "affectvlm" / "weights" / specs.DEFAULT_DIRNAME
    weights.mkdir(parents=True)

    class Recorded(PurePosixPath):
        def locate(self):
            return prefix / self.relative_to("../../..")

    class Dist:
        files = [Recorded("../../../share/affectvlm/app/app.py"),
                 Recorded(f"../../../share/affectvlm/weights/{specs.DEFAULT_DIRNAME}/affectvlm.json")]

    monkeypatch.setattr(md, "distribution", lambda name: Dist())
    site = tmp_path / "site" / "affectvlm"
    site.mkdir(parents=True)
    monkeypatch.setattr(installed, "__file__", str(site / "installed.py"))
    monkeypatch.setattr(applaunch, "__file__", str(site / "applaunch.py"))
    assert app.resolve() in installed.share_candidates("app") and applaunch.find_app() == app.resolve()
    assert weights.resolve() in specs.default_model_candidates()
