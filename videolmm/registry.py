"""The component registry: named families, decoders, samplers and prompt templates.

A plain container the core reads (``registry.decoder("keyframe")``). The plugin host
(:mod:`videolmm.plugin.manager`) fills it from every plugin's register hooks and hands it to the
engine; the core never builds one itself, and never imports pluggy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from videolmm.errors import RegistryError

PLURAL = {"family": "families", "decoder": "decoders", "sampler": "samplers", "template": "templates"}


@dataclass
class Registry:
    """Named components collected from every plugin's register hooks.

    Attributes:
        families: family name → :class:`~videolmm.models.families.base.Family`.
        decoders: decoder name → decoder.
        samplers: sampler name → sampler callable.
        templates: template name → :class:`~videolmm.models.prompts.PromptTemplate`.
        owners: ``"kind:name"`` → name of the plugin that registered it.
    """

    families: dict[str, Any] = field(default_factory=dict)
    decoders: dict[str, Any] = field(default_factory=dict)
    samplers: dict[str, Any] = field(default_factory=dict)
    templates: dict[str, Any] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)

    def _get(self, kind: str, table: Mapping[str, Any], name: str) -> Any:
        try:
            return table[name]
        except KeyError:
            known = ", ".join(sorted(table)) or "none"
            raise RegistryError(f"unknown {kind} {name!r}; registered {PLURAL[kind]}: {known}") from None

    def family(self, name: str) -> Any:
        """Return the family registered as ``name`` or raise ``RegistryError`` listing names."""
        return self._get("family", self.families, name)

    def decoder(self, name: str) -> Any:
        """Return the decoder registered as ``name``."""
        return self._get("decoder", self.decoders, name)

    def sampler(self, name: str) -> Any:
        """Return the sampler registered as ``name``."""
        return self._get("sampler", self.samplers, name)

    def template(self, name: str) -> Any:
        """Return the prompt template registered as ``name``."""
        return self._get("template", self.templates, name)


__all__ = ["PLURAL", "Registry"]
