"""Sensor kinds, spec side: the keys each kind takes under ``sensor:`` and how its target is checked.

A sensor mapping has exactly one kind key (``file``, ``command``, ``http`` or ``task``), whose
value is the target, and that kind's own keys. How a target is poked is the engine's
(``engine.sensors``); the task keys every sensor task may set (``poke_interval``, ``soft_fail``,
``timeout``) are rows of ``spec.keys``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pipectl.spec.keys import MAX_MIN_SIZE, Boolean, Duration, Integer, Key, Templates, check_shell, check_templates

if TYPE_CHECKING:
    from yaml.nodes import ScalarNode

    from pipectl.spec.nodes import NodeReader, Pair


class SensorKind:
    name: ClassVar[str]
    keys: ClassVar[tuple[Key, ...]] = ()  # beyond the kind key itself
    templated: ClassVar[bool] = True  # the target may use templates

    @classmethod
    def key_names(cls) -> tuple[str, ...]:
        return (cls.name, *(k.name for k in cls.keys))

    @classmethod
    def check_target(cls, r: "NodeReader", node: "ScalarNode", target: str, scope: Templates) -> None:
        if cls.templated:
            check_templates(r, node, scope)

    @classmethod
    def read_keys(cls, r: "NodeReader", m: dict[str, "Pair"], scope: Templates) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for k in cls.keys:
            if k.name in m:
                value = k.value.read(r, k.name, m[k.name][1], scope)
                if value is not None:
                    values[k.field] = value
        return values

    @classmethod
    def read(cls, r: "NodeReader", m: dict[str, "Pair"], node: "ScalarNode", target: str,
             scope: Templates) -> dict[str, Any]:
        """Check the target and read the kind's keys: the Sensor's settings beyond kind and target."""
        cls.check_target(r, node, target, scope)
        return cls.read_keys(r, m, scope)


class FileSensor(SensorKind):
    """A path (a glob with ``glob: true``) that exists, of at least ``min_size`` bytes."""

    name = "file"
    keys = (Key("min_size", Integer(0, MAX_MIN_SIZE), ("file sensor",)),
            Key("glob", Boolean(), ("file sensor",), default=False))


class CommandSensor(SensorKind):
    """A shell command: exit 0 is ready, 1 is not yet."""

    name = "command"

    @classmethod
    def check_target(cls, r, node, target, scope):
        check_templates(r, node, scope)
        check_shell(r, node, scope)


class HttpSensor(SensorKind):
    """A URL that answers 2xx."""

    name = "http"

    @classmethod
    def check_target(cls, r, node, target, scope):
        check_templates(r, node, scope)
        if not target.startswith(("http://", "https://")):
            r.error(node, f"'http' must be an http:// or https:// URL, got {target!r}")


class TaskSensor(SensorKind):
    """``PIPELINE.TASK`` succeeded for the same ds (shifted back by ``delta``)."""

    name = "task"
    keys = (Key("delta", Duration(), ("task sensor",)),)
    templated = False

    @classmethod
    def check_target(cls, r, node, target, scope):
        pipeline, dot, task = target.rpartition(".")
        if not dot or not pipeline or not task:
            r.error(node, f"'task' must be PIPELINE.TASK, got {target!r}")
        else:  # checked once every file is read: the other pipeline may be in any of them
            r.sensor_refs.append((r.pos(node), pipeline, task))


KINDS: dict[str, type[SensorKind]] = {k.name: k for k in (FileSensor, CommandSensor, HttpSensor, TaskSensor)}
