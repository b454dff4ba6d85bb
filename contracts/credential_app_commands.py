"""The commands about a customer's credentials (credential add, password, delete) and apps
(list, activate, deactivate, configure, settings); wire configuration as in
``contracts.customer_commands``.
"""

from __future__ import annotations

from contracts.customer_commands import CommandBase, CustomerCommand, Password
from contracts.rules import (
    AppName,
    AppSettings,
    CredentialName,
    CredentialUser,
)


class _CredentialCommand(
    CommandBase, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    customer: CredentialUser
    credential_name: CredentialName


class AddCredential(
    _CredentialCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="AddCredential",
):
    credential_password: Password


class ChangeCredentialPassword(
    _CredentialCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ChangeCredentialPassword",
):
    new_credential_password: Password


class DeleteCredential(
    _CredentialCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DeleteCredential",
):
    pass


class ListApps(
    CustomerCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ListApps",
):
    pass


class _AppCommand(
    CustomerCommand, frozen=True, forbid_unknown_fields=True, kw_only=True, tag_field="type"
):
    app: AppName


class ActivateApp(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ActivateApp",
):
    pass


class DeactivateApp(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="DeactivateApp",
):
    pass


class ConfigureApp(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="ConfigureApp",
):
    settings: AppSettings


class GetAppSettings(
    _AppCommand,
    frozen=True,
    forbid_unknown_fields=True,
    kw_only=True,
    tag_field="type",
    tag="GetAppSettings",
):
    pass
