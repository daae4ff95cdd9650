"""Schemathesis hooks for scripts/schemathesis (SCHEMATHESIS_HOOKS).

The fuzzer cannot know the password of the session it signs in with, so
every password change it sent would stop at the current-password check
(403) and the change behind it would never be fuzzed. A positive case's
`current_password` is therefore replaced by the account's password, kept
here and moved on by every change that succeeds, so the new-password policy
and the change itself are fuzzed too. Negative cases are sent as they were
generated, so their refusal is still checked.
"""

import os

import schemathesis
from schemathesis.generation.modes import GenerationMode

CHANGE = "POST /api/me/password"
password = [os.environ["PORTER_SESSION_PASSWORD"]]


def _positive_change(case):
    return (
        case.operation.label == CHANGE
        and case.meta is not None
        and case.meta.generation.mode == GenerationMode.POSITIVE
        and isinstance(case.body, dict)
        and isinstance(case.body.get("current_password"), str)
    )


@schemathesis.hook
def before_call(context, case, kwargs):
    if _positive_change(case):
        case.body["current_password"] = password[0]


@schemathesis.hook
def after_call(context, case, response):
    if _positive_change(case) and response.status_code == 200:
        password[0] = case.body["new_password"]
