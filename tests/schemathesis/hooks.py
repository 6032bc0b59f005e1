"""schemathesis hooks for tests/schemathesis.rs (loaded through
SCHEMATHESIS_HOOKS).

`previous_interaction_id` must name a run the server holds, or the request
is a 422 (spec 2.2): no JSON Schema can say "an id that exists", so every
generated value would be a schema-valid request refused. The hook drops
the field from generated run bodies; tests/turns.rs and both SDK suites
test it, with real and made-up ids.
"""

import schemathesis


def _without_previous(run):
    if isinstance(run, dict):
        run.pop("previous_interaction_id", None)


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict):
        _without_previous(body)
        for run in body.get("inputs") or []:
            _without_previous(run)
        _without_previous(body.get("run"))
    return body


@schemathesis.hook
def before_call(ctx, case, kwargs):
    # The coverage phase builds its cases without the map_ hooks: the field
    # is dropped here too, just before the request goes out.
    map_body(ctx, case.body)
