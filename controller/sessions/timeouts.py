"""A session's idle timeout and lifetime: the defaults, the ceilings, and the rule between."""

from __future__ import annotations

from dataclasses import dataclass

from controller.errors import InvalidRequest


@dataclass(frozen=True)
class SessionTimeouts:
    """One kind's timeouts, from its settings (named, for the messages)."""

    idle_s: int
    max_idle_s: int
    lifetime_s: int
    max_lifetime_s: int
    max_idle_setting: str
    max_lifetime_setting: str

    def checked(self, idle: int | None, lifetime: int | None) -> tuple[int, int]:
        """(idle timeout, lifetime) of a new session: the defaults where it asked for none;
        a 422 naming the field when it asks above a ceiling."""
        if idle is not None and idle > self.max_idle_s:
            raise InvalidRequest(
                "idleTimeoutS",
                "less_than_equal",
                f"at most {self.max_idle_s} (setting {self.max_idle_setting})",
            )
        if lifetime is not None and lifetime > self.max_lifetime_s:
            raise InvalidRequest(
                "maxLifetimeS",
                "less_than_equal",
                f"at most {self.max_lifetime_s} (setting {self.max_lifetime_setting})",
            )
        # A default above its ceiling (both settings) gives way to the ceiling.
        return (
            min(idle or self.idle_s, self.max_idle_s),
            min(lifetime or self.lifetime_s, self.max_lifetime_s),
        )
