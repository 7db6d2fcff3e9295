"""State changes for agents, keys, policies and the inventory.

Each public function owns its transaction and writes its audit event in it. One module per
family:

- policies: a policy's versions: `PolicyContent` (what a version says, checked),
  policy_publish, and a candidate's shadow: policy_shadow_start, policy_shadow_discard,
  policy_shadow_promote
- apikeys: apikey_issue, apikey_revoke
- registration: agent_register (first policy version and key), agent_set_callback
- assets: the inventory: asset_save, asset_delete, asset_names (the names an entry is stored
  under)
"""

from __future__ import annotations

from .apikeys import IssuedKey, apikey_issue, apikey_revoke
from .assets import AssetError, asset_delete, asset_names, asset_save
from .policies import (
    POLICY_FIELDS,
    PolicyContent,
    PolicyError,
    policy_publish,
    policy_shadow_discard,
    policy_shadow_promote,
    policy_shadow_start,
)
from .registration import agent_register, agent_set_callback

__all__ = [
    "POLICY_FIELDS",
    "AssetError",
    "IssuedKey",
    "PolicyContent",
    "PolicyError",
    "agent_register",
    "agent_set_callback",
    "apikey_issue",
    "apikey_revoke",
    "asset_delete",
    "asset_names",
    "asset_save",
    "policy_publish",
    "policy_shadow_discard",
    "policy_shadow_promote",
    "policy_shadow_start",
]
