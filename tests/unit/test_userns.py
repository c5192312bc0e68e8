"""The host settings that refuse unprivileged user namespaces, named with their fix."""

from __future__ import annotations

from pathlib import Path

from controller.userns import APPARMOR_PROFILE, explained, read_sysctl, restrictions


def test_ubuntus_apparmor_restriction_is_named_with_the_profile_that_lifts_it() -> None:
    ubuntu = {"kernel/apparmor_restrict_unprivileged_userns": "1"}
    detail = explained("bwrap: setting up uid map: Permission denied", ubuntu.get)
    assert detail.startswith("bwrap: setting up uid map: Permission denied (AppArmor")
    assert "kernel.apparmor_restrict_unprivileged_userns=1" in detail
    assert APPARMOR_PROFILE in detail
    assert (Path(__file__).resolve().parents[2] / APPARMOR_PROFILE).is_file()


def test_each_refusing_setting_is_named_and_permissive_ones_are_not() -> None:
    refusing = {
        "kernel/apparmor_restrict_unprivileged_userns": "1",
        "kernel/unprivileged_userns_clone": "0",
        "user/max_user_namespaces": "0",
    }
    assert len(restrictions(refusing.get)) == 3
    permissive = {
        "kernel/apparmor_restrict_unprivileged_userns": "0",
        "kernel/unprivileged_userns_clone": "1",
        "user/max_user_namespaces": "63000",
    }
    assert restrictions(permissive.get) == []
    assert explained("failed", permissive.get) == "failed"
    assert restrictions({}.get) == []  # a kernel without these files refuses nothing


def test_sysctls_are_read_from_proc_sys(tmp_path: Path) -> None:
    (tmp_path / "user").mkdir()
    (tmp_path / "user/max_user_namespaces").write_text("0\n")
    assert read_sysctl("user/max_user_namespaces", tmp_path) == "0"
    assert read_sysctl("kernel/absent", tmp_path) is None
