//! The mock processor's output against a table of JSON schemas: content
//! validates (formats included), basis follows spec 2.4, and a second call
//! gives the same output. Also text and auto outputs, and schemas that no
//! value can satisfy, which must still give an output without panicking.

use serde_json::{json, Map, Value};
use taskyard::faces::parallel::wire::{FieldBasis, Output};
use taskyard::model::TaskSpec;

/// The mock's output as Parallel's wire shows it (spec 2.4).
fn mock_output(processor: &str, input: &Value, spec: &TaskSpec) -> Output {
    Output::from(&taskyard::processors::mock_output(processor, input, spec))
}

fn json_spec(schema: &Value) -> TaskSpec {
    TaskSpec {
        output_schema: json!({"type": "json", "json_schema": schema}),
        input_schema: None,
    }
}

/// Checks the rules of spec 2.4: one entry per top-level key in content
/// order, `key.N` right after an array-valued key, one or two citations with
/// https URLs, and a confidence level.
fn check_basis(name: &str, content: &Map<String, Value>, basis: &[FieldBasis]) {
    let mut expected = Vec::new();
    for (key, value) in content {
        expected.push(key.clone());
        if let Value::Array(items) = value {
            expected.extend((0..items.len()).map(|index| format!("{key}.{index}")));
        }
    }
    let fields: Vec<String> = basis.iter().map(|entry| entry.field.clone()).collect();
    assert_eq!(fields, expected, "{name}: basis fields");
    for entry in basis {
        assert!(!entry.reasoning.is_empty(), "{name}: empty reasoning");
        assert!(
            (1..=2).contains(&entry.citations.len()),
            "{name}: {} citations",
            entry.citations.len()
        );
        for citation in &entry.citations {
            assert!(
                citation.url.starts_with("https://"),
                "{name}: {}",
                citation.url
            );
            assert!(citation.title.is_some(), "{name}: citation without title");
            assert!(
                citation.excerpts.as_ref().is_some_and(|e| !e.is_empty()),
                "{name}: citation without excerpts"
            );
        }
        assert!(
            matches!(entry.confidence.as_deref(), Some("low" | "medium" | "high")),
            "{name}: confidence {:?}",
            entry.confidence
        );
    }
}

/// Runs the mock twice on `schema` and returns the content after checking
/// shape, validity, basis and repeatability.
fn run(name: &str, schema: &Value, input: &Value) -> Map<String, Value> {
    let spec = json_spec(schema);
    let output = mock_output("core", input, &spec);
    let again = mock_output("core", input, &spec);
    assert_eq!(
        serde_json::to_string(&output).expect("serialises"),
        serde_json::to_string(&again).expect("serialises"),
        "{name}: not repeatable"
    );
    let Output::Json {
        content,
        basis,
        output_schema,
        mcp_tool_calls,
        beta_fields,
    } = output
    else {
        panic!("{name}: not a json output");
    };
    assert_eq!(output_schema, None, "{name}");
    assert_eq!(mcp_tool_calls, None, "{name}");
    assert_eq!(beta_fields, None, "{name}");
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|error| panic!("{name}: schema does not compile: {error}"));
    let instance = Value::Object(content.clone());
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: content does not validate: {errors:?}\ncontent: {instance:#}"
    );
    check_basis(name, &content, &basis);
    content
}

/// A pydantic v2 `model_json_schema()` of a small research report, as
/// Python `execute(output=Report)` sends it: `$defs`, `$ref`, `anyOf` with
/// null for `Optional`, titles, an enum, formats, a nested list of models, a
/// `dict[str, int]`, a `Literal`, a `Decimal` and constrained fields.
fn pydantic_report() -> Value {
    json!({
        "$defs": {
            "Address": {
                "properties": {
                    "street": {"title": "Street", "type": "string"},
                    "city": {"title": "City", "type": "string"},
                    "postcode": {
                        "anyOf": [
                            {"pattern": "^[0-9]{5}$", "type": "string"},
                            {"type": "null"}
                        ],
                        "default": null,
                        "title": "Postcode"
                    }
                },
                "required": ["street", "city"],
                "title": "Address",
                "type": "object"
            },
            "Person": {
                "properties": {
                    "name": {"maxLength": 80, "minLength": 1, "title": "Name", "type": "string"},
                    "email": {
                        "anyOf": [{"format": "email", "type": "string"}, {"type": "null"}],
                        "default": null,
                        "title": "Email"
                    },
                    "role": {"$ref": "#/$defs/Role"},
                    "age": {
                        "anyOf": [
                            {"exclusiveMinimum": 0, "maximum": 150, "type": "integer"},
                            {"type": "null"}
                        ],
                        "default": null,
                        "title": "Age"
                    },
                    "address": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}], "default": null}
                },
                "required": ["name", "role"],
                "title": "Person",
                "type": "object"
            },
            "Role": {
                "enum": ["founder", "ceo", "cto", "board member"],
                "title": "Role",
                "type": "string"
            }
        },
        "description": "What we know about a company.",
        "properties": {
            "company_name": {"description": "Legal name", "title": "Company Name", "type": "string"},
            "kind": {"const": "report", "default": "report", "title": "Kind", "type": "string"},
            "founded": {"anyOf": [{"format": "date", "type": "string"}, {"type": "null"}], "default": null, "title": "Founded"},
            "updated_at": {"format": "date-time", "title": "Updated At", "type": "string"},
            "website": {"format": "uri", "maxLength": 2083, "minLength": 1, "title": "Website", "type": "string"},
            "report_id": {"format": "uuid", "title": "Report Id", "type": "string"},
            "employees": {"minimum": 1, "title": "Employees", "type": "integer"},
            "revenue": {"anyOf": [{"type": "number"}, {"pattern": "^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$", "type": "string"}], "title": "Revenue"},
            "public": {"default": false, "title": "Public", "type": "boolean"},
            "people": {"items": {"$ref": "#/$defs/Person"}, "title": "People", "type": "array"},
            "headquarters": {"$ref": "#/$defs/Address"},
            "tags": {"items": {"type": "string"}, "maxItems": 5, "title": "Tags", "type": "array", "uniqueItems": true},
            "headcount_by_country": {"additionalProperties": {"type": "integer"}, "title": "Headcount By Country", "type": "object"},
            "rating": {"anyOf": [{"maximum": 5.0, "minimum": 0.0, "type": "number"}, {"type": "null"}], "default": null, "title": "Rating"}
        },
        "required": ["company_name", "updated_at", "website", "report_id", "employees", "revenue", "people", "headquarters"],
        "title": "Report",
        "type": "object"
    })
}

/// More pydantic v2 output: a discriminated union (`oneOf` of `$ref`s with
/// a `discriminator`), an int enum, `set[str]`, `tuple[int, str]`,
/// `conlist(min_length=2)`, a constrained string and `examples`.
fn pydantic_pets() -> Value {
    json!({
        "$defs": {
            "Cat": {
                "properties": {
                    "pet_type": {"const": "cat", "title": "Pet Type", "type": "string"},
                    "meows": {"title": "Meows", "type": "integer"}
                },
                "required": ["pet_type", "meows"],
                "title": "Cat",
                "type": "object"
            },
            "Dog": {
                "properties": {
                    "pet_type": {"const": "dog", "title": "Pet Type", "type": "string"},
                    "barks": {"title": "Barks", "type": "number"}
                },
                "required": ["pet_type", "barks"],
                "title": "Dog",
                "type": "object"
            },
            "Size": {"enum": [1, 2, 3], "title": "Size", "type": "integer"}
        },
        "properties": {
            "pet": {
                "discriminator": {
                    "mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"},
                    "propertyName": "pet_type"
                },
                "oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
                "title": "Pet"
            },
            "size": {"$ref": "#/$defs/Size", "default": 2},
            "nicknames": {"items": {"type": "string"}, "title": "Nicknames", "type": "array", "uniqueItems": true},
            "chip": {
                "maxItems": 2,
                "minItems": 2,
                "prefixItems": [{"type": "integer"}, {"type": "string"}],
                "title": "Chip",
                "type": "array"
            },
            "vets": {"items": {"type": "string"}, "minItems": 2, "title": "Vets", "type": "array"},
            "licence": {
                "examples": ["AB-1234"],
                "pattern": "^[A-Z]{2}-[0-9]{4}$",
                "title": "Licence",
                "type": "string"
            },
            "weight_kg": {"exclusiveMinimum": 0, "le": 100, "maximum": 100, "title": "Weight Kg", "type": "number"}
        },
        "required": ["pet", "size", "nicknames", "chip", "vets", "licence", "weight_kg"],
        "title": "Owner",
        "type": "object"
    })
}

/// A self-referencing pydantic model: `$ref` at the root and a recursive
/// list of children.
fn pydantic_tree() -> Value {
    json!({
        "$defs": {
            "Node": {
                "properties": {
                    "label": {"title": "Label", "type": "string"},
                    "children": {"items": {"$ref": "#/$defs/Node"}, "title": "Children", "type": "array"},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}], "default": null}
                },
                "required": ["label", "children"],
                "title": "Node",
                "type": "object"
            }
        },
        "$ref": "#/$defs/Node"
    })
}

/// A schema nested `levels` objects deep.
fn nested(levels: usize) -> Value {
    let mut schema = json!({"type": "object", "properties": {"leaf": {"type": "integer", "minimum": 7}}, "required": ["leaf"]});
    for level in 0..levels {
        schema = json!({
            "type": "object",
            "properties": {format!("level_{level}"): schema},
            "required": [format!("level_{level}")]
        });
    }
    schema
}

fn table() -> Vec<(&'static str, Value)> {
    vec![
        (
            "scalar types",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "count": {"type": "integer"},
                    "score": {"type": "number"},
                    "active": {"type": "boolean"},
                    "nothing": {"type": "null"}
                },
                "required": ["name", "count"]
            }),
        ),
        (
            "type arrays",
            json!({
                "type": "object",
                "properties": {
                    "maybe_text": {"type": ["string", "null"]},
                    "maybe_number": {"type": ["null", "number"]},
                    "either": {"type": ["integer", "string"]},
                    "only_null": {"type": ["null"]}
                }
            }),
        ),
        (
            "closed object",
            json!({
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
                "additionalProperties": false
            }),
        ),
        (
            "required without properties",
            json!({
                "type": "object",
                "required": ["first", "second"],
                "additionalProperties": {"type": "integer", "minimum": 10}
            }),
        ),
        (
            "enum and const",
            json!({
                "type": "object",
                "properties": {
                    "color": {"enum": ["red", "green", "blue"]},
                    "typed": {"type": "integer", "enum": ["one", 2, null, 3]},
                    "mixed": {"enum": [1, "two", {"three": 3}, [4]]},
                    "fixed": {"const": {"version": 2}},
                    "nullable_enum": {"enum": [null, "x"], "type": ["string", "null"]}
                },
                "required": ["color", "typed", "mixed", "fixed"]
            }),
        ),
        (
            "optional via anyOf",
            json!({
                "type": "object",
                "properties": {
                    "note": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 3}]},
                    "count": {"anyOf": [{"type": "integer", "minimum": 5}, {"type": "null"}], "default": null},
                    "only_null": {"anyOf": [{"type": "null"}]}
                }
            }),
        ),
        (
            "oneOf discriminated",
            json!({
                "type": "object",
                "properties": {
                    "shape": {
                        "oneOf": [
                            {"type": "object", "properties": {"kind": {"const": "circle"}, "radius": {"type": "number", "exclusiveMinimum": 0}}, "required": ["kind", "radius"]},
                            {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "number"}}, "required": ["kind", "side"]}
                        ]
                    },
                    "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
                },
                "required": ["shape"]
            }),
        ),
        (
            "allOf merge",
            json!({
                "type": "object",
                "properties": {
                    "entity": {
                        "allOf": [
                            {"type": "object", "properties": {"id": {"type": "integer", "minimum": 100}}, "required": ["id"]},
                            {"properties": {"name": {"type": "string", "maxLength": 12}, "id": {"maximum": 105}}, "required": ["name"]},
                            {"$ref": "#/$defs/Stamp"}
                        ],
                        "unevaluatedProperties": false
                    }
                },
                "required": ["entity"],
                "$defs": {"Stamp": {"properties": {"created": {"type": "string", "format": "date"}}, "required": ["created"]}}
            }),
        ),
        (
            "$defs and definitions",
            json!({
                "type": "object",
                "properties": {
                    "a": {"$ref": "#/$defs/A"},
                    "b": {"$ref": "#/definitions/B"},
                    "c": {"$ref": "#/$defs/A", "description": "with a sibling"}
                },
                "required": ["a", "b", "c"],
                "$defs": {"A": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
                "definitions": {"B": {"type": "string", "enum": ["p", "q"]}}
            }),
        ),
        (
            "draft 7 definitions",
            json!({
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "definitions": {"Point": {"type": "array", "items": [{"type": "number"}, {"type": "number"}], "additionalItems": false}},
                "properties": {"point": {"$ref": "#/definitions/Point"}, "points": {"type": "array", "items": {"$ref": "#/definitions/Point"}, "minItems": 2}},
                "required": ["point"]
            }),
        ),
        ("recursive tree", pydantic_tree()),
        (
            "recursion through root",
            json!({
                "type": "object",
                "properties": {"name": {"type": "string"}, "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}, "more": {"type": "array", "items": {"$ref": "#"}}},
                "required": ["name"]
            }),
        ),
        (
            "nested objects and arrays",
            json!({
                "type": "object",
                "properties": {
                    "matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2}, "minItems": 3},
                    "owner": {"type": "object", "properties": {"name": {"type": "string"}, "contacts": {"type": "array", "items": {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}, "required": ["email"]}}}},
                    "empty": {"type": "array", "maxItems": 0}
                },
                "required": ["matrix", "owner"]
            }),
        ),
        (
            "tuples",
            json!({
                "type": "object",
                "properties": {
                    "pair": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false},
                    "open": {"type": "array", "prefixItems": [{"const": "head"}], "items": {"type": "boolean"}, "minItems": 3},
                    "bounded": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
                },
                "required": ["pair", "open", "bounded"]
            }),
        ),
        (
            "string lengths",
            json!({
                "type": "object",
                "properties": {
                    "short": {"type": "string", "maxLength": 3},
                    "long": {"type": "string", "minLength": 40},
                    "exact": {"type": "string", "minLength": 10, "maxLength": 10},
                    "empty": {"type": "string", "maxLength": 0},
                    "a_rather_long_property_name_for_a_short_value": {"type": "string", "maxLength": 8}
                },
                "required": ["short", "long", "exact", "empty"]
            }),
        ),
        (
            "formats",
            json!({
                "type": "object",
                "properties": {
                    "date": {"type": "string", "format": "date"},
                    "date_time": {"type": "string", "format": "date-time"},
                    "time": {"type": "string", "format": "time"},
                    "email": {"type": "string", "format": "email"},
                    "uri": {"type": "string", "format": "uri"},
                    "url": {"type": "string", "format": "url"},
                    "uuid": {"type": "string", "format": "uuid"},
                    "ipv4": {"type": "string", "format": "ipv4"},
                    "ipv6": {"type": "string", "format": "ipv6"},
                    "hostname": {"type": "string", "format": "hostname"},
                    "duration": {"type": "string", "format": "duration"},
                    "uri_reference": {"type": "string", "format": "uri-reference"},
                    "json_pointer": {"type": "string", "format": "json-pointer"},
                    "custom": {"type": "string", "format": "x-unknown"}
                },
                "required": ["date", "date_time", "time", "email", "uri", "uuid", "ipv4", "hostname"]
            }),
        ),
        (
            "patterns",
            json!({
                "type": "object",
                "properties": {
                    "code": {"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"},
                    "choice": {"type": "string", "pattern": "^(foo|bar)baz$"},
                    "hex": {"type": "string", "pattern": "^#[0-9a-fA-F]{6}$"},
                    "sku": {"type": "string", "pattern": "^SKU_[a-z0-9]+(?:-[a-z0-9]+)*$", "minLength": 12},
                    "phone": {"type": "string", "pattern": "^\\+?[1-9]\\d{1,14}$"},
                    "unanchored": {"type": "string", "pattern": "ab+c"},
                    "password": {"type": "string", "pattern": "^(?=.*[A-Z])(?=.*\\d)[A-Za-z\\d]{8,}$"},
                    "not_space": {"type": "string", "pattern": "^[^\\s]{2,4}$"},
                    "escapes": {"type": "string", "pattern": "^\\w+\\.\\w+@\\x41\\u0042$"}
                },
                "required": ["code", "choice", "hex", "sku", "phone", "unanchored", "password", "not_space", "escapes"]
            }),
        ),
        (
            "integer bounds",
            json!({
                "type": "object",
                "properties": {
                    "small": {"type": "integer", "minimum": 1, "maximum": 3},
                    "negative": {"type": "integer", "maximum": -1000},
                    "exclusive": {"type": "integer", "exclusiveMinimum": 9, "exclusiveMaximum": 11},
                    "big": {"type": "integer", "minimum": 5000000000u64},
                    "stepped": {"type": "integer", "multipleOf": 7, "minimum": 50},
                    "half_steps": {"type": "integer", "multipleOf": 0.5, "minimum": 3, "maximum": 4},
                    "zero": {"type": "integer", "minimum": 0, "maximum": 0}
                },
                "required": ["small", "negative", "exclusive", "big", "stepped", "half_steps", "zero"]
            }),
        ),
        (
            "number bounds",
            json!({
                "type": "object",
                "properties": {
                    "unit": {"type": "number", "minimum": 0, "maximum": 1},
                    "open_unit": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.1},
                    "tiny": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e-9},
                    "cents": {"type": "number", "multipleOf": 0.01, "minimum": 10.005},
                    "thirds": {"type": "number", "multipleOf": 0.3},
                    "price": {"type": "number", "exclusiveMinimum": 99.5, "maximum": 100}
                },
                "required": ["unit", "open_unit", "tiny", "cents", "thirds", "price"]
            }),
        ),
        (
            "draft 4 exclusives",
            json!({
                "$schema": "http://json-schema.org/draft-04/schema#",
                "type": "object",
                "properties": {
                    "positive": {"type": "integer", "minimum": 0, "exclusiveMinimum": true, "maximum": 2, "exclusiveMaximum": true}
                },
                "required": ["positive"]
            }),
        ),
        (
            "untyped and trivial",
            json!({
                "properties": {
                    "anything": {},
                    "also_anything": true,
                    "described": {"description": "no type at all"},
                    "implied_number": {"minimum": 3, "maximum": 4},
                    "implied_array": {"minItems": 2},
                    "implied_object": {"required": ["k"]}
                },
                "required": ["anything", "also_anything", "implied_number", "implied_array", "implied_object"]
            }),
        ),
        (
            "property counts",
            json!({
                "type": "object",
                "properties": {
                    "bag": {"type": "object", "additionalProperties": {"type": "boolean"}, "minProperties": 3},
                    "capped": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}}, "required": ["b"], "maxProperties": 1}
                },
                "required": ["bag", "capped"]
            }),
        ),
        (
            "dependent required",
            json!({
                "type": "object",
                "properties": {
                    "card": {"type": "object", "properties": {"number": {"type": "string"}}, "dependentRequired": {"number": ["expiry", "holder"]}},
                    "legacy": {"type": "object", "properties": {"a": {"type": "integer"}}, "dependencies": {"a": ["b"]}}
                },
                "required": ["card", "legacy"]
            }),
        ),
        (
            "unique and contains",
            json!({
                "type": "object",
                "properties": {
                    "flags": {"type": "array", "items": {"type": "boolean"}, "minItems": 2, "uniqueItems": true},
                    "colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 3, "uniqueItems": true},
                    "with_admin": {"type": "array", "items": {"type": "string"}, "contains": {"const": "admin"}},
                    "two_big": {"type": "array", "items": {"type": "integer"}, "contains": {"minimum": 1000}, "minContains": 2}
                },
                "required": ["flags", "colors", "with_admin", "two_big"]
            }),
        ),
        ("pydantic report", pydantic_report()),
        ("pydantic pets", pydantic_pets()),
        (
            "negations and conditions",
            json!({
                "type": "object",
                "properties": {
                    "not_forty_two": {"type": "integer", "minimum": 42, "maximum": 43, "not": {"const": 42}},
                    "conditional": {
                        "type": "object",
                        "properties": {"country": {"enum": ["US", "CA"]}, "postal_code": {"type": "string"}},
                        "required": ["country", "postal_code"],
                        "if": {"properties": {"country": {"const": "US"}}},
                        "then": {"properties": {"postal_code": {"pattern": "^[0-9]{5}$"}}},
                        "else": {"properties": {"postal_code": {"pattern": "^[A-Z][0-9][A-Z] [0-9][A-Z][0-9]$"}}}
                    }
                },
                "required": ["not_forty_two", "conditional"]
            }),
        ),
        (
            "object-level anyOf",
            json!({
                "type": "object",
                "properties": {
                    "contact": {
                        "type": "object",
                        "properties": {"email": {"type": "string", "format": "email"}, "phone": {"type": "string"}},
                        "anyOf": [{"required": ["email"]}, {"required": ["phone"]}],
                        "additionalProperties": false
                    }
                },
                "required": ["contact"]
            }),
        ),
        ("deeply nested", nested(20)),
        (
            "ref via $id",
            json!({
                "$id": "https://example.com/schemas/order",
                "type": "object",
                "$defs": {"Money": {"type": "object", "properties": {"amount": {"type": "number", "minimum": 0}, "currency": {"type": "string", "pattern": "^[A-Z]{3}$"}}, "required": ["amount", "currency"]}},
                "properties": {"total": {"$ref": "https://example.com/schemas/order#/$defs/Money"}, "tax": {"$ref": "#/$defs/Money"}},
                "required": ["total", "tax"]
            }),
        ),
        (
            "escaped pointer",
            json!({
                "type": "object",
                "$defs": {"a/b": {"type": "integer", "const": 5}, "c~d": {"type": "string", "const": "tilde"}, "e f": {"type": "boolean"}},
                "properties": {"slash": {"$ref": "#/$defs/a~1b"}, "tilde": {"$ref": "#/$defs/c~0d"}, "space": {"$ref": "#/$defs/e%20f"}},
                "required": ["slash", "tilde", "space"]
            }),
        ),
        ("empty root", json!({})),
        ("root with only a type", json!({"type": "object"})),
    ]
}

#[test]
fn every_schema_in_the_table_gets_valid_content_and_basis() {
    let table = table();
    assert!(table.len() >= 25, "{} schemas", table.len());
    for (name, schema) in &table {
        for input in [json!("Acme Corp"), json!({"company": "Acme", "year": 1999})] {
            run(name, schema, &input);
        }
    }
}

#[test]
fn content_fills_every_property_in_schema_order() {
    let schema = json!({
        "type": "object",
        "properties": {"zeta": {"type": "string"}, "alpha": {"type": "integer"}, "mid": {"type": ["string", "null"]}},
        "required": ["alpha"]
    });
    let content = run("order", &schema, &json!("x"));
    let keys: Vec<&str> = content.keys().map(String::as_str).collect();
    assert_eq!(keys, ["zeta", "alpha", "mid"]);
    assert!(content["mid"].is_string(), "the non-null type is preferred");
}

#[test]
fn pydantic_content_is_plausible() {
    let content = run(
        "pydantic",
        &pydantic_report(),
        &json!({"company_name": "Acme Inc."}),
    );
    assert_eq!(
        content["company_name"], "Acme Inc.",
        "a fitting input value is echoed"
    );
    assert_eq!(content["kind"], "report");
    assert!(
        content["founded"].is_string(),
        "Optional picks the non-null branch"
    );
    let people = content["people"].as_array().expect("people is an array");
    assert!(!people.is_empty());
    assert!(
        people[0]["address"].is_object(),
        "nested Optional model is filled"
    );
    assert!(content["headcount_by_country"]
        .as_object()
        .is_some_and(|map| !map.is_empty()));
    assert!(
        content["revenue"].is_number(),
        "Decimal picks the number branch"
    );
}

#[test]
fn recursive_schemas_end_small() {
    let content = run("tree", &pydantic_tree(), &json!("root"));
    let children = content["children"].as_array().expect("children");
    assert_eq!(children.len(), 1);
    // The recursion turns minimal one level down: required keys only.
    assert_eq!(children[0]["children"], json!([]));
    assert!(children[0].get("parent").is_none());
    assert_eq!(content["parent"]["children"], json!([]));
}

#[test]
fn strings_are_plausible_and_echo_the_input() {
    let schema = json!({
        "type": "object",
        "properties": {"company": {"type": "string"}, "year": {"type": "integer", "minimum": 2000}, "topic": {"type": "string"}},
    });
    let content = run("echo", &schema, &json!({"company": "Acme", "year": 1999}));
    assert_eq!(content["company"], "Acme");
    assert_ne!(
        content["year"], 1999,
        "an input value that does not fit is not echoed"
    );
    let topic = content["topic"].as_str().expect("topic");
    assert!(topic.starts_with("mock topic "), "{topic}");
}

#[test]
fn text_output_has_one_output_basis_and_mentions_input_and_description() {
    let spec = TaskSpec {
        output_schema: json!({"type": "text", "description": "A haiku about the company"}),
        input_schema: None,
    };
    let input = json!("Acme Corp makes anvils");
    let output = mock_output("lite", &input, &spec);
    assert_eq!(output, mock_output("lite", &input, &spec));
    let Output::Text {
        content,
        basis,
        mcp_tool_calls,
        beta_fields,
    } = output
    else {
        panic!("not a text output");
    };
    assert!(content.contains("Acme Corp makes anvils"), "{content}");
    assert!(content.contains("A haiku about the company"), "{content}");
    assert_eq!(basis.len(), 1);
    assert_eq!(basis[0].field, "output");
    assert_eq!((mcp_tool_calls, beta_fields), (None, None));
    assert!((1..=2).contains(&basis[0].citations.len()));
    assert!(matches!(
        basis[0].confidence.as_deref(),
        Some("low" | "medium" | "high")
    ));

    // A bare string is a text schema too, and long inputs are shortened.
    let spec = TaskSpec {
        output_schema: json!("one sentence"),
        input_schema: None,
    };
    let long = json!({"text": "word ".repeat(500)});
    let Output::Text { content, .. } = mock_output("lite", &long, &spec) else {
        panic!("not a text output");
    };
    assert!(content.contains("one sentence"));
    assert!(content.len() < 1_000, "{} bytes", content.len());
}

#[test]
fn auto_output_validates_against_the_schema_it_reports() {
    for input in [
        json!("Who founded Acme?"),
        json!({"company": "Acme", "n": [1, 2]}),
    ] {
        let output = mock_output("pro", &input, &TaskSpec::auto());
        assert_eq!(output, mock_output("pro", &input, &TaskSpec::auto()));
        let Output::Json {
            content,
            basis,
            output_schema,
            ..
        } = output
        else {
            panic!("auto gives json");
        };
        let schema = output_schema.expect("auto reports its schema");
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .expect("auto schema compiles");
        assert!(validator.is_valid(&Value::Object(content.clone())));
        assert!(content.contains_key("summary"));
        check_basis("auto", &content, &basis);
    }
}

#[test]
fn processor_name_and_input_change_the_content() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}}});
    let spec = json_spec(&schema);
    let a = mock_output("core", &json!("a"), &spec);
    let b = mock_output("core", &json!("b"), &spec);
    let c = mock_output("base", &json!("a"), &spec);
    assert_ne!(a, b);
    assert_ne!(a, c);
}

/// Schemas no value satisfies, malformed ones and pathological ones: the
/// mock must still return an object content with a well-formed basis, and
/// quickly.
#[test]
fn hostile_schemas_never_panic() {
    let mut deep = json!({"type": "string"});
    for _ in 0..500 {
        deep = json!({"type": "object", "properties": {"x": deep}, "required": ["x"]});
    }
    let mut wide_defs = Map::new();
    for level in 0..40 {
        let next = format!("#/$defs/D{}", level + 1);
        wide_defs.insert(
            format!("D{level}"),
            json!({"type": "object", "properties": {"a": {"$ref": next}, "b": {"$ref": next}}, "required": ["a", "b"]}),
        );
    }
    wide_defs.insert("D40".into(), json!({"type": "integer"}));
    let doubling = json!({"$defs": wide_defs, "$ref": "#/$defs/D0"});
    let branches: Vec<Value> = (0..30_000)
        .map(|n| json!({"properties": {"a": {"minimum": n}}}))
        .collect();
    let wide_all_of = json!({"allOf": branches});
    let schemas = [
        json!(5),
        json!("a string"),
        json!([1, 2]),
        json!(null),
        json!(false),
        json!(true),
        json!({"type": 5}),
        json!({"type": "nonsense"}),
        json!({"type": []}),
        json!({"$ref": "#/nowhere"}),
        json!({"$ref": 5}),
        json!({"$ref": "other.json#/x"}),
        json!({"$ref": "#anchor"}),
        json!({"$ref": "#"}),
        json!({"allOf": [{"$ref": "#"}, {"$ref": "#"}]}),
        json!({"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}, "properties": {"x": {"$ref": "#/$defs/A"}}}),
        json!({"$defs": {"A": {"type": "object", "properties": {"me": {"$ref": "#/$defs/A"}}, "required": ["me"]}}, "$ref": "#/$defs/A"}),
        json!({"properties": {"a": false}, "required": ["a"]}),
        json!({"properties": {"a": {"enum": []}, "b": {"anyOf": []}, "c": {"oneOf": 3}, "d": {"allOf": [false]}}}),
        json!({"properties": {"a": {"minimum": 10, "maximum": 1}, "b": {"type": "integer", "multipleOf": 0}, "c": {"multipleOf": -1}, "d": {"exclusiveMinimum": "x"}}}),
        json!({"properties": {"a": {"type": "number", "minimum": 1e300, "multipleOf": 1e-300}, "b": {"type": "integer", "minimum": 1.5, "maximum": 1.7}}}),
        json!({"properties": {"a": {"type": "string", "pattern": "("}, "b": {"type": "string", "pattern": "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))"}, "c": {"type": "string", "pattern": "(?:(?:(?:a{1000}){1000}){1000})"}, "d": {"pattern": "\\"}}}),
        json!({"properties": {"a": {"type": "string", "minLength": 1e12}, "b": {"type": "string", "minLength": 5, "maxLength": 2}, "c": {"type": "string", "maxLength": -1}}}),
        json!({"properties": {"a": {"type": "array", "minItems": 100000000u64}, "b": {"type": "array", "minItems": 1e300}, "c": {"type": "array", "items": {"type": "array", "minItems": 1000, "items": {"type": "array", "minItems": 1000}}, "minItems": 1000}}}),
        json!({"properties": {"a": {"type": "object", "minProperties": 1000000, "additionalProperties": false}, "b": {"required": [1, 2, null]}}}),
        json!({"properties": {"a": {"type": "array", "items": {"const": 1}, "minItems": 2, "uniqueItems": true}}}),
        json!({"properties": {"a": {"not": {}}}, "required": ["a"]}),
        doubling,
        wide_all_of,
        deep,
    ];
    for (index, schema) in schemas.iter().enumerate() {
        let spec = json_spec(schema);
        let output = mock_output("core", &json!({"company": "Acme"}), &spec);
        assert_eq!(
            output,
            mock_output("core", &json!({"company": "Acme"}), &spec),
            "schema {index}"
        );
        let Output::Json { content, basis, .. } = output else {
            panic!("schema {index}: not json");
        };
        check_basis(&format!("hostile {index}"), &content, &basis);
    }
}
