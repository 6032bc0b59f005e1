//! The output of an enrichment: typed fields given on the command line
//! (`--field ceo_name:str`, `--field founded:int | None:Year founded`), as
//! `parallel-web-tools` takes them, or a JSON Schema; and the JSON Schema
//! the runs' task spec carries either way.

use serde_json::{json, Map, Value};

/// One output column.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    /// The JSON Schema of its value.
    pub schema: Value,
}

/// Reads `NAME:TYPE[:DESCRIPTION]`. TYPE is `str`, `int`, `float`, `bool`
/// or `list[T]` of those, with an optional `| None` (the value may be
/// null).
pub fn parse(spec: &str) -> Result<Field, String> {
    let (name, rest) = spec
        .split_once(':')
        .ok_or_else(|| format!("--field {spec:?}: expected NAME:TYPE[:DESCRIPTION]"))?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(format!(
            "--field {spec:?}: the name must be letters, digits, '_' or '-'"
        ));
    }
    let (kind, description) = match rest.split_once(':') {
        Some((kind, description)) => (kind, Some(description.trim())),
        None => (rest, None),
    };
    let (kind, nullable) = match kind.split_once('|') {
        Some((kind, none)) if none.trim() == "None" => (kind.trim(), true),
        Some(_) => {
            return Err(format!(
                "--field {spec:?}: only `| None` may follow the type"
            ))
        }
        None => (kind.trim(), false),
    };
    let mut schema = type_schema(kind)
        .ok_or_else(|| format!("--field {spec:?}: unknown type {kind:?}; use str, int, float, bool or list[...] of them"))?;
    if nullable {
        let base = schema["type"].clone();
        schema["type"] = json!([base, "null"]);
    }
    if let Some(description) = description.filter(|text| !text.is_empty()) {
        schema["description"] = json!(description);
    }
    Ok(Field {
        name: name.to_string(),
        schema,
    })
}

fn type_schema(kind: &str) -> Option<Value> {
    let scalar = |kind: &str| match kind {
        "str" => Some("string"),
        "int" => Some("integer"),
        "float" => Some("number"),
        "bool" => Some("boolean"),
        _ => None,
    };
    if let Some(inner) = kind.strip_prefix("list[").and_then(|k| k.strip_suffix(']')) {
        return scalar(inner.trim()).map(|item| json!({"type": "array", "items": {"type": item}}));
    }
    scalar(kind).map(|kind| json!({ "type": kind }))
}

/// The object schema of `fields`: every field required (a nullable one
/// may be null), nothing else.
pub fn object_schema(fields: &[Field]) -> Value {
    let properties: Map<String, Value> = fields
        .iter()
        .map(|field| (field.name.clone(), field.schema.clone()))
        .collect();
    json!({
        "type": "object",
        "properties": properties,
        "required": fields.iter().map(|field| field.name.clone()).collect::<Vec<_>>(),
        "additionalProperties": false,
    })
}

/// The columns of a JSON Schema given whole: its top-level properties, in
/// order.
pub fn columns_of(schema: &Value) -> Vec<String> {
    schema["properties"]
        .as_object()
        .map(|properties| properties.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_read_as_parallel_web_tools_writes_them() {
        assert_eq!(
            parse("ceo_name:str").expect("a valid field").schema,
            json!({"type": "string"})
        );
        assert_eq!(
            parse("founded:int | None:Year founded")
                .expect("a valid field")
                .schema,
            json!({"type": ["integer", "null"], "description": "Year founded"})
        );
        assert_eq!(
            parse("tags:list[str]").expect("a valid field").schema,
            json!({"type": "array", "items": {"type": "string"}})
        );
        assert_eq!(
            parse("public:bool").expect("a valid field").schema,
            json!({"type": "boolean"})
        );
        for bad in [
            "nocolon",
            ":str",
            "x:date",
            "x:list[date]",
            "x:int | Some",
            "a b:str",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
