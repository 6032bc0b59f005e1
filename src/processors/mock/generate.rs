//! A value for a JSON schema. The `Generator` walks the schema, following
//! local `$ref`s, merging `allOf` branches into one schema, choosing among
//! `anyOf` and `oneOf` branches and working around `not` and `if`, and says
//! when the value it made may not validate, so that the caller can check it
//! and retry with another variant.
//!
//! Pure: no I/O, no clock, no randomness but the request's seed. It knows
//! nothing of processors, outputs or basis, and does not decide what an
//! uncertain value leads to; `mod.rs` does. `jsonschema` only judges
//! candidates here (patterns, `oneOf`, `not`, `if`), it never makes them.

use std::collections::HashMap;

use serde_json::{json, Value};

use super::numbers::{Bounds, Decimal};
use super::regex::Regex;
use super::schema::{
    echo_fits, extra_schema, fits_alone, has_kind, kinds_of, merge_into, usize_of, Kind, ANY,
};
use super::{deeper_than, fnv1a, into_object, MINIMAL_VARIANT};
use crate::limits::{JSON_DEPTH_MAX, SCHEMA_DEPTH_MAX};
use crate::model::JsonObject;

/// Schema nesting (subschemas and `$ref` hops) past which values shrink to
/// the smallest valid shape, so recursive schemas end.
const MINIMAL_DEPTH: usize = SCHEMA_DEPTH_MAX;

/// Schema nesting past which the generator stops descending at all. Twice
/// the soft limit leaves room for the required fields of minimal values.
const HARD_DEPTH: usize = 2 * SCHEMA_DEPTH_MAX;

/// Subschemas visited per attempt. Depth alone does not bound the work: a
/// chain of `$defs` that each use the next twice doubles it per level.
const WORK_MAX: usize = 25_000;

/// Items of one array and keys of one object that `minItems` or
/// `minProperties` can ask for; past it the output is not valid anyway.
const ITEMS_MAX: usize = 1_000;

/// Characters `minLength` can ask for.
const STRING_CHARS_MAX: usize = 16_384;

/// Keywords whose constraint the generator does not try to meet; a value
/// under one of them is checked against the whole schema afterwards.
const UNCHECKED: [&str; 7] = [
    "dependentSchemas",
    "propertyNames",
    "patternProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "$dynamicRef",
    "$recursiveRef",
];

const OBJECT_KEYWORDS: [&str; 10] = [
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "minProperties",
    "maxProperties",
    "propertyNames",
    "dependentRequired",
    "dependentSchemas",
    "unevaluatedProperties",
];

const ARRAY_KEYWORDS: [&str; 8] = [
    "items",
    "prefixItems",
    "additionalItems",
    "minItems",
    "maxItems",
    "contains",
    "uniqueItems",
    "unevaluatedItems",
];

const NUMBER_KEYWORDS: [&str; 5] = [
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];

/// Whether every `$ref` under `schema` points into `$defs` or
/// `definitions`.
fn refs_into_defs(schema: Option<&Value>) -> bool {
    let mut stack: Vec<&Value> = schema.into_iter().collect();
    while let Some(value) = stack.pop() {
        match value {
            Value::Array(items) => stack.extend(items),
            Value::Object(object) => {
                for (key, value) in object {
                    let local = match (key.as_str(), value) {
                        ("$ref", Value::String(reference)) => {
                            reference.starts_with("#/$defs/")
                                || reference.starts_with("#/definitions/")
                        }
                        ("$ref" | "$dynamicRef" | "$recursiveRef", _) => false,
                        _ => true,
                    };
                    if !local {
                        return false;
                    }
                    stack.push(value);
                }
            }
            _ => {}
        }
    }
    true
}

/// Compiled validators of patterns and subschemas, shared by the attempts
/// of one request; `None` for those that cannot be checked.
pub(super) type Checks = HashMap<String, Option<jsonschema::Validator>>;

/// Where a value goes: its field name (for plausible strings), its path
/// (for the per-value seed) and what the input offers for it.
struct Slot<'s> {
    name: &'s str,
    path: &'s str,
    /// The input's value of the same name, offered for top-level fields.
    echo: Option<&'s Value>,
    /// The top-level value, which must be an object.
    root: bool,
}

/// A schema with its `$ref` and `allOf` merged in.
#[derive(Default)]
struct Flat {
    schema: JsonObject,
    /// The `$ref`s followed, kept on the generator's stack while the value
    /// under this schema is made.
    refs: Vec<String>,
    /// A followed `$ref` is already being expanded further up.
    recursive: bool,
    /// A `false` schema was merged in: no value can validate.
    never: bool,
}

pub(super) struct Generator<'a> {
    root: &'a Value,
    seed: u64,
    variant: u32,
    input: Option<&'a JsonObject>,
    /// `$ref`s being expanded by the values under construction. `#` is
    /// there from the start: the root is being expanded.
    refs: Vec<String>,
    work: usize,
    /// The value may not validate; see [`json_content`](super::json_content).
    pub(super) uncertain: bool,
    checks: &'a mut Checks,
    /// Whether every `$ref` of the document points into `$defs` or
    /// `definitions`, so subschemas can be checked on their own.
    defs_only: Option<bool>,
}

impl<'a> Generator<'a> {
    pub(super) fn new(
        root: &'a Value,
        seed: u64,
        variant: u32,
        input: Option<&'a JsonObject>,
        checks: &'a mut Checks,
    ) -> Generator<'a> {
        Generator {
            root,
            seed,
            variant,
            input,
            refs: vec!["#".to_string()],
            work: 0,
            uncertain: false,
            checks,
            defs_only: None,
        }
    }

    pub(super) fn root(&mut self) -> JsonObject {
        let slot = Slot {
            name: "",
            path: "",
            echo: None,
            root: true,
        };
        let minimal = self.variant == MINIMAL_VARIANT;
        match self.generate(self.root, &slot, 0, minimal) {
            Value::Object(object) => object,
            other => {
                self.uncertain = true;
                into_object(other)
            }
        }
    }

    /// A per-value hash: the request's seed, the value's path, a salt that
    /// tells apart the uses within one value, and the variant, so that a
    /// retry draws other numbers and strings too.
    fn hash(&self, path: &str, salt: u8) -> u64 {
        fnv1a(&[
            &self.seed.to_le_bytes(),
            path.as_bytes(),
            &[salt],
            &self.variant.to_le_bytes(),
        ])
    }

    pub(super) fn exhausted(&self) -> bool {
        self.work > WORK_MAX
    }

    fn generate(&mut self, schema: &Value, slot: &Slot<'_>, depth: usize, minimal: bool) -> Value {
        self.work += 1;
        if depth >= HARD_DEPTH || self.exhausted() {
            self.uncertain = true;
            return self.smallest(schema);
        }
        let object = match schema {
            Value::Object(object) => object,
            Value::Bool(false) => {
                self.uncertain = true;
                return Value::Null;
            }
            // `true`, and anything malformed that slipped past validation,
            // allows any value.
            _ => return self.generate_flat(&JsonObject::new(), slot, depth, minimal),
        };
        if !object.contains_key("$ref") && !object.contains_key("allOf") {
            return self.generate_flat(object, slot, depth, minimal || depth >= MINIMAL_DEPTH);
        }
        let mut flat = Flat::default();
        self.flatten_into(object, depth, &mut flat);
        if flat.never {
            self.uncertain = true;
            return Value::Null;
        }
        let minimal = minimal || flat.recursive || depth >= MINIMAL_DEPTH;
        let pushed = flat.refs.len();
        self.refs.append(&mut flat.refs);
        let value = self.generate_flat(&flat.schema, slot, depth, minimal);
        self.refs.truncate(self.refs.len().saturating_sub(pushed));
        value
    }

    /// Merges `object`, its `$ref` target and its `allOf` branches into one
    /// schema, in that order, so the object's own properties come first.
    fn flatten_into(&mut self, object: &JsonObject, depth: usize, out: &mut Flat) {
        self.work += 1;
        if depth >= HARD_DEPTH || self.exhausted() {
            self.uncertain = true;
            return;
        }
        merge_into(&mut out.schema, object, &mut self.uncertain);
        match object.get("$ref") {
            None => {}
            // Already merged here: a diamond of `allOf`s, or a `$ref` that
            // names itself. Merging again adds nothing.
            Some(Value::String(reference)) if out.refs.contains(reference) => {}
            Some(Value::String(reference)) => match self.resolve(reference) {
                Some(target) => {
                    if self.refs.contains(reference) {
                        out.recursive = true;
                    }
                    out.refs.push(reference.clone());
                    self.flatten_value(target, depth + 1, out);
                }
                None => self.uncertain = true,
            },
            Some(_) => self.uncertain = true,
        }
        if let Some(Value::Array(branches)) = object.get("allOf") {
            for branch in branches {
                self.flatten_value(branch, depth + 1, out);
            }
        }
    }

    fn flatten_value(&mut self, schema: &Value, depth: usize, out: &mut Flat) {
        match schema {
            Value::Object(object) => self.flatten_into(object, depth, out),
            Value::Bool(false) => out.never = true,
            _ => {}
        }
    }

    /// The target of a local `$ref`: `#`, a JSON pointer such as
    /// `#/$defs/Item` or `#/definitions/Item`, optionally after the root's
    /// own `$id`. Anchors and other documents are not followed.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let root = self.root;
        let (base, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        if !base.is_empty() {
            let id = root.get("$id").and_then(Value::as_str)?;
            if id.trim_end_matches('#') != base {
                return None;
            }
        }
        if fragment.is_empty() {
            return Some(root);
        }
        if !fragment.starts_with('/') {
            return None;
        }
        root.pointer(&percent_decode(fragment))
    }

    /// The smallest value of a schema, without descending into it: what
    /// the generator makes once it is past every limit.
    fn smallest(&self, schema: &Value) -> Value {
        let mut schema = schema;
        for _ in 0..8 {
            match schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|reference| self.resolve(reference))
            {
                Some(target) => schema = target,
                None => break,
            }
        }
        let Some(object) = schema.as_object() else {
            return Value::Null;
        };
        if let Some(value) = object.get("const") {
            return value.clone();
        }
        if let Some(Value::Array(options)) = object.get("enum") {
            return options.first().cloned().unwrap_or(Value::Null);
        }
        let kinds = kinds_of(object).unwrap_or_default();
        if kinds.contains(&Kind::Null) {
            return Value::Null;
        }
        match kinds.first() {
            Some(Kind::Object) => Value::Object(JsonObject::new()),
            Some(Kind::Array) => Value::Array(Vec::new()),
            Some(Kind::String) => {
                let length = usize_of(object.get("minLength"))
                    .unwrap_or(0)
                    .min(STRING_CHARS_MAX);
                Value::String("x".repeat(length))
            }
            Some(Kind::Integer | Kind::Number) => Value::from(0),
            Some(Kind::Boolean) => Value::Bool(false),
            Some(Kind::Null) | None => Value::Null,
        }
    }

    /// A value for a schema with no `$ref` or `allOf` left at its top.
    fn generate_flat(
        &mut self,
        schema: &JsonObject,
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) -> Value {
        if let Some(value) = slot.echo {
            if echo_fits(schema, value) {
                return value.clone();
            }
        }
        if let Some(value) = schema.get("const") {
            if !fits_alone(schema, value) {
                self.uncertain = true;
            }
            return value.clone();
        }
        if let Some(forbidden) = schema.get("not") {
            return self.generate_not(schema, forbidden, slot, depth, minimal);
        }
        if let Some(condition) = schema.get("if") {
            return self.generate_if(schema, condition, slot, depth, minimal);
        }
        if let Some(Value::Array(branches)) = schema.get("oneOf") {
            if !branches.is_empty() {
                return self.generate_one_of(schema, branches, slot, depth, minimal);
            }
        }
        if let Some(Value::Array(branches)) = schema.get("anyOf") {
            if let Some(&index) = self.branch_order(branches, minimal).first() {
                return self.generate_branch(
                    schema,
                    "anyOf",
                    &branches[index],
                    slot,
                    depth,
                    minimal,
                );
            }
        }
        if let Some(Value::Array(options)) = schema.get("enum") {
            return self.pick_enum(schema, options, slot, minimal);
        }
        if UNCHECKED
            .iter()
            .any(|keyword| schema.contains_key(*keyword))
            || schema
                .get("dependencies")
                .and_then(Value::as_object)
                .is_some_and(|dependencies| dependencies.values().any(Value::is_object))
        {
            self.uncertain = true;
        }
        match self.pick_kind(schema, slot, minimal) {
            Kind::Null => Value::Null,
            Kind::Boolean => Value::Bool(self.hash(slot.path, 1) & 1 == 1),
            Kind::Integer => self.number(schema, true, slot),
            Kind::Number => self.number(schema, false, slot),
            Kind::String => Value::String(self.string(schema, slot)),
            Kind::Array => self.array(schema, slot, depth, minimal),
            Kind::Object => Value::Object(self.object(schema, slot, depth, minimal)),
        }
    }

    /// A value for one branch of `keyword` (`anyOf` or `oneOf`), which
    /// applies together with its siblings: they are merged.
    fn generate_branch(
        &mut self,
        schema: &JsonObject,
        keyword: &str,
        branch: &Value,
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) -> Value {
        let mut merged = schema.clone();
        merged.remove(keyword);
        merged.insert("allOf".to_string(), Value::Array(vec![branch.clone()]));
        self.generate(&Value::Object(merged), slot, depth + 1, minimal)
    }

    /// Branches in the order to try them: those that allow more than null,
    /// then null ones (for minimal values null ones first), rotated by the
    /// variant.
    fn branch_order(&self, branches: &[Value], minimal: bool) -> Vec<usize> {
        let null_only = |branch: &Value| {
            branch.get("type").and_then(Value::as_str) == Some("null")
                || branch.get("const").is_some_and(Value::is_null)
                || branch
                    .get("enum")
                    .and_then(Value::as_array)
                    .is_some_and(|options| options.iter().all(Value::is_null))
        };
        let (nulls, others): (Vec<usize>, Vec<usize>) =
            (0..branches.len()).partition(|&index| null_only(&branches[index]));
        let mut order: Vec<usize> = if minimal {
            nulls.into_iter().chain(others).collect()
        } else {
            others.into_iter().chain(nulls).collect()
        };
        if !order.is_empty() {
            let turn = self.variant as usize % order.len();
            order.rotate_left(turn);
        }
        order
    }

    /// A value matching exactly one branch: branches may overlap, so each
    /// try is checked against all of them.
    fn generate_one_of(
        &mut self,
        schema: &JsonObject,
        branches: &[Value],
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) -> Value {
        let mut first = None;
        for index in self.branch_order(branches, minimal).into_iter().take(4) {
            let value =
                self.generate_branch(schema, "oneOf", &branches[index], slot, depth, minimal);
            if branches.len() == 1 {
                return value;
            }
            let mut matched = Some(0);
            for branch in branches {
                matched = match (matched, self.matches(branch, &value)) {
                    (Some(count), Some(hit)) => Some(count + usize::from(hit)),
                    _ => None,
                };
            }
            match matched {
                Some(1) => return value,
                Some(_) => {
                    first.get_or_insert(value);
                }
                None => {
                    self.uncertain = true;
                    return value;
                }
            }
        }
        self.uncertain = true;
        first.unwrap_or(Value::Null)
    }

    /// A value that does not match `forbidden`: values are drawn from other
    /// paths until one does not.
    fn generate_not(
        &mut self,
        schema: &JsonObject,
        forbidden: &Value,
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) -> Value {
        let mut allowed = schema.clone();
        allowed.remove("not");
        let mut value = Value::Null;
        for attempt in 0..5 {
            let path = match attempt {
                0 => slot.path.to_string(),
                _ => format!("{}~not{attempt}", slot.path),
            };
            let retry = Slot {
                name: slot.name,
                path: &path,
                echo: slot.echo.filter(|_| attempt == 0),
                root: slot.root,
            };
            value = self.generate_flat(&allowed, &retry, depth, minimal);
            match self.matches(forbidden, &value) {
                Some(false) => return value,
                Some(true) => {}
                None => break,
            }
        }
        self.uncertain = true;
        value
    }

    /// A value for `if`/`then`/`else`, built to match `if` and `then`
    /// (odd variants: `else`, hoping not to match `if`), then checked.
    fn generate_if(
        &mut self,
        schema: &JsonObject,
        condition: &Value,
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) -> Value {
        let mut rest = schema.clone();
        rest.remove("if");
        let then = rest.remove("then");
        let otherwise = rest.remove("else");
        let parts = match (&then, &otherwise) {
            (Some(_), Some(otherwise)) if self.variant % 2 == 1 => vec![otherwise.clone()],
            (Some(then), _) => vec![condition.clone(), then.clone()],
            (None, Some(otherwise)) => vec![otherwise.clone()],
            (None, None) => Vec::new(),
        };
        rest.insert("allOf".to_string(), Value::Array(parts));
        let value = self.generate(&Value::Object(rest), slot, depth + 1, minimal);
        let conditional = json!({
            "if": condition,
            "then": then.unwrap_or(Value::Bool(true)),
            "else": otherwise.unwrap_or(Value::Bool(true)),
        });
        if self.matches(&conditional, &value) != Some(true) {
            self.uncertain = true;
        }
        value
    }

    fn pick_enum(
        &mut self,
        schema: &JsonObject,
        options: &[Value],
        slot: &Slot<'_>,
        minimal: bool,
    ) -> Value {
        let kinds = kinds_of(schema);
        let mut pool: Vec<&Value> = options
            .iter()
            .filter(|option| {
                kinds
                    .as_ref()
                    .is_none_or(|kinds| kinds.iter().any(|&kind| has_kind(option, kind)))
            })
            .collect();
        if pool.is_empty() {
            self.uncertain = true;
            pool = options.iter().collect();
        }
        if pool.is_empty() {
            return Value::Null;
        }
        if !fits_alone(schema, pool[0]) {
            self.uncertain = true;
        }
        if minimal {
            let choice = pool
                .iter()
                .find(|option| option.is_null())
                .unwrap_or(&pool[0]);
            return (*choice).clone();
        }
        if pool.iter().any(|option| !option.is_null()) {
            pool.retain(|option| !option.is_null());
        }
        let draw = self.hash(slot.path, 5);
        pool[(draw % pool.len() as u64) as usize].clone()
    }

    fn pick_kind(&mut self, schema: &JsonObject, slot: &Slot<'_>, minimal: bool) -> Kind {
        let kinds = match kinds_of(schema) {
            Some(kinds) if !kinds.is_empty() => kinds,
            declared => {
                if declared.is_some() {
                    // `type` names nothing we know: no value can match it.
                    self.uncertain = true;
                }
                let has_any =
                    |keywords: &[&str]| keywords.iter().any(|key| schema.contains_key(*key));
                return if slot.root || has_any(&OBJECT_KEYWORDS) {
                    Kind::Object
                } else if has_any(&ARRAY_KEYWORDS) {
                    Kind::Array
                } else if has_any(&NUMBER_KEYWORDS) {
                    Kind::Number
                } else {
                    // Also what an empty schema gets: a string reads best.
                    Kind::String
                };
            }
        };
        if slot.root && kinds.contains(&Kind::Object) {
            return Kind::Object;
        }
        if minimal {
            // Cheapest first: a recursive schema ends soonest this way.
            let order = [
                Kind::Null,
                Kind::Boolean,
                Kind::Integer,
                Kind::Number,
                Kind::String,
                Kind::Array,
                Kind::Object,
            ];
            return order
                .into_iter()
                .find(|kind| kinds.contains(kind))
                .unwrap_or(Kind::Null);
        }
        kinds
            .iter()
            .copied()
            .find(|&kind| kind != Kind::Null)
            .unwrap_or(Kind::Null)
    }

    fn number(&mut self, schema: &JsonObject, integer: bool, slot: &Slot<'_>) -> Value {
        let bounds = Bounds::of(schema);
        let hash = self.hash(slot.path, 2);
        let whole = 1 + (hash % 100) as i64;
        let mut target = if integer {
            whole as f64
        } else {
            whole as f64 + [0.25, 0.5, 0.75][((hash >> 8) % 3) as usize]
        };
        if let (Some((low, _)), Some((high, _))) = (bounds.lower, bounds.upper) {
            if high - low <= 1_000.0 {
                // Spread over a small range rather than clamp to one end,
                // so that items of a `uniqueItems` array can differ.
                target = low + (high - low) * ((hash >> 16) % 1_000) as f64 / 1_000.0;
            }
        }
        let multiple = schema
            .get("multipleOf")
            .and_then(Value::as_f64)
            .filter(|multiple| multiple.is_finite() && *multiple > 0.0);
        let steps: Vec<Decimal> = match multiple {
            Some(multiple) => {
                let step = Decimal::of(multiple);
                let step = if integer {
                    step.and_then(Decimal::whole_multiple)
                } else {
                    step
                };
                step.into_iter().collect()
            }
            None if integer => vec![Decimal::new(1, 0)],
            // Quarters read well; finer steps fit narrow ranges.
            None => vec![Decimal::new(25, 2), Decimal::new(1, 2), Decimal::new(1, 6)],
        };
        for step in steps {
            if let Some(value) = bounds.multiple_near(step, target) {
                return value;
            }
        }
        self.uncertain = true;
        bounds.fallback(integer)
    }

    fn string(&mut self, schema: &JsonObject, slot: &Slot<'_>) -> String {
        let min = usize_of(schema.get("minLength")).unwrap_or(0);
        let max = usize_of(schema.get("maxLength"));
        if min > STRING_CHARS_MAX || max.is_some_and(|max| max < min) {
            self.uncertain = true;
        }
        let hash = self.hash(slot.path, 3);
        let pattern = schema.get("pattern").and_then(Value::as_str);
        if let Some(text) = schema
            .get("format")
            .and_then(Value::as_str)
            .and_then(|format| formatted(format, hash))
        {
            let length = text.chars().count();
            if pattern.is_some() || length < min || max.is_some_and(|max| length > max) {
                // A formatted value has its own length and shape.
                self.uncertain = true;
            }
            return text;
        }
        let name = if slot.name.is_empty() {
            "value"
        } else {
            slot.name
        };
        let plain = fit_length(
            format!("mock {name} {:06x}", hash & 0xff_ffff),
            min,
            max,
            hash,
        );
        match pattern {
            Some(pattern) => self.patterned(pattern, min, max, hash, plain),
            None => plain,
        }
    }

    /// A string for a `pattern`. Regular expressions are not solved in
    /// general: candidates sampled from the pattern (a subset of ECMA-262
    /// syntax: literals, classes, escapes, groups, alternation, quantifiers;
    /// lookarounds and backreferences are skipped) and a few plain strings
    /// are checked with the regex engine validation uses, and the first
    /// match wins. When none matches, the value is flagged for the
    /// whole-schema check and will most likely fail it.
    fn patterned(
        &mut self,
        pattern: &str,
        min: usize,
        max: Option<usize>,
        hash: u64,
        plain: String,
    ) -> String {
        let mut candidates = Vec::new();
        if let Some(regex) = Regex::parse(pattern) {
            let shortest = regex.sample(hash, 0);
            let need = min
                .saturating_sub(shortest.chars().count())
                .min(STRING_CHARS_MAX) as u32;
            candidates.push(shortest);
            for extra in [need, need.saturating_add(1), 1, 2, 4, 8, 16, 64] {
                candidates.push(regex.sample(hash, extra));
            }
        }
        candidates.push(plain);
        for base in ["mock", "0", "a", "A"] {
            candidates.push(fit_length(base.to_string(), min, max, hash));
        }
        let key = format!("pattern {min}:{max:?}:{pattern}");
        let checker = self.checks.entry(key).or_insert_with(|| {
            let mut check = json!({"type": "string", "pattern": pattern, "minLength": min});
            if let Some(max) = max {
                check["maxLength"] = Value::from(max);
            }
            jsonschema::validator_for(&check).ok()
        });
        if let Some(checker) = checker {
            for candidate in &candidates {
                if checker.is_valid(&Value::String(candidate.clone())) {
                    return candidate.clone();
                }
            }
        }
        self.uncertain = true;
        candidates.swap_remove(0)
    }

    fn array(
        &mut self,
        schema: &JsonObject,
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) -> Value {
        // 2020-12 `prefixItems` + `items`, or the older array-form `items`
        // + `additionalItems`.
        let (prefix, rest): (&[Value], Option<&Value>) = match schema.get("items") {
            Some(Value::Array(prefix)) => (prefix, schema.get("additionalItems")),
            items => (
                schema
                    .get("prefixItems")
                    .and_then(Value::as_array)
                    .map_or(&[], Vec::as_slice),
                items,
            ),
        };
        let min = usize_of(schema.get("minItems")).unwrap_or(0);
        let max = usize_of(schema.get("maxItems"));
        let contains = schema.get("contains");
        let min_contains = match contains {
            Some(_) => usize_of(schema.get("minContains")).unwrap_or(1),
            None => 0,
        };
        if schema.contains_key("maxContains") {
            self.uncertain = true;
        }
        let mut count = if minimal {
            min
        } else {
            min.max(1).max(prefix.len())
        };
        if min_contains > 0 {
            // Items that meet `contains` go after the prefix, whose own
            // schemas they might contradict.
            count = count.max(prefix.len() + min_contains);
        }
        if let Some(max) = max {
            count = count.min(max);
        }
        if matches!(rest, Some(Value::Bool(false))) {
            count = count.min(prefix.len());
        }
        if count > ITEMS_MAX {
            count = ITEMS_MAX;
        }
        if count < min || count < min_contains {
            self.uncertain = true;
        }
        let contains_from = count.saturating_sub(min_contains);
        let unique = schema.get("uniqueItems") == Some(&Value::Bool(true));
        let mut items: Vec<Value> = Vec::with_capacity(count);
        for index in 0..count {
            if self.exhausted() {
                self.uncertain = true;
                break;
            }
            let item = prefix.get(index).or(rest).unwrap_or(&ANY);
            let merged;
            let item = match contains {
                Some(contains) if index >= contains_from => {
                    merged = json!({"allOf": [item, contains]});
                    &merged
                }
                _ => item,
            };
            let mut value = Value::Null;
            // Items come from their own paths, so they differ; a small enum
            // or a boolean can still repeat, hence the retries.
            for attempt in 0..8 {
                let path = match attempt {
                    0 => format!("{}.{index}", slot.path),
                    _ => format!("{}.{index}~{attempt}", slot.path),
                };
                let child = Slot {
                    name: slot.name,
                    path: &path,
                    echo: None,
                    root: false,
                };
                value = self.generate(item, &child, depth + 1, minimal);
                if !unique || !items.contains(&value) {
                    break;
                }
            }
            if unique && items.contains(&value) {
                self.uncertain = true;
            }
            items.push(value);
        }
        Value::Array(items)
    }

    fn object(
        &mut self,
        schema: &JsonObject,
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) -> JsonObject {
        let empty = JsonObject::new();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let additional = schema.get("additionalProperties");
        let closed = matches!(additional, Some(Value::Bool(false)));
        let extra = extra_schema(schema);
        let mut out = JsonObject::new();
        for (key, property) in properties {
            let needed = required.contains(&key.as_str());
            if minimal && !needed {
                continue;
            }
            if property == &Value::Bool(false) {
                if needed {
                    self.uncertain = true;
                }
                continue;
            }
            let value = self.child(property, slot, key, depth, minimal);
            out.insert(key.clone(), value);
        }
        for key in &required {
            if !out.contains_key(*key) {
                if closed {
                    // Required yet not allowed: nothing satisfies both.
                    self.uncertain = true;
                }
                let value = self.child(extra, slot, key, depth, minimal);
                out.insert(key.to_string(), value);
            }
        }
        self.dependent_required(schema, &mut out, slot, depth, minimal);
        if !minimal
            && properties.is_empty()
            && out.is_empty()
            && additional.is_some_and(Value::is_object)
        {
            // A map such as pydantic's `dict[str, int]`: one entry shows
            // its shape better than none.
            let value = self.child(extra, slot, "mock_key", depth, minimal);
            out.insert("mock_key".to_string(), value);
        }
        let min = usize_of(schema.get("minProperties")).unwrap_or(0);
        let mut number = 1;
        while out.len() < min && !closed && out.len() < ITEMS_MAX && !self.exhausted() {
            let key = format!("extra_{number}");
            number += 1;
            if out.contains_key(&key) {
                continue;
            }
            let value = self.child(extra, slot, &key, depth, minimal);
            out.insert(key, value);
        }
        if out.len() < min {
            self.uncertain = true;
        }
        if let Some(max) = usize_of(schema.get("maxProperties")) {
            while out.len() > max {
                let optional = out
                    .keys()
                    .rev()
                    .find(|key| !required.contains(&key.as_str()))
                    .cloned();
                match optional {
                    Some(key) => {
                        out.shift_remove(&key);
                    }
                    None => {
                        self.uncertain = true;
                        break;
                    }
                }
            }
        }
        out
    }

    /// Adds the keys that `dependentRequired` (or the array form of the
    /// older `dependencies`) asks for once another key is present.
    fn dependent_required(
        &mut self,
        schema: &JsonObject,
        out: &mut JsonObject,
        slot: &Slot<'_>,
        depth: usize,
        minimal: bool,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let mut rules: Vec<(&str, &str)> = Vec::new();
        for keyword in ["dependentRequired", "dependencies"] {
            if let Some(Value::Object(map)) = schema.get(keyword) {
                for (key, names) in map {
                    if let Value::Array(names) = names {
                        rules.extend(
                            names
                                .iter()
                                .filter_map(Value::as_str)
                                .map(|name| (key.as_str(), name)),
                        );
                    }
                }
            }
        }
        // A key added here can itself have dependents; each pass adds at
        // least one key, so as many passes as rules suffice.
        for _ in 0..rules.len() {
            let mut added = false;
            for &(key, name) in &rules {
                if out.contains_key(key) && !out.contains_key(name) {
                    let property = properties
                        .and_then(|properties| properties.get(name))
                        .unwrap_or(extra_schema(schema));
                    let value = self.child(property, slot, name, depth, minimal);
                    out.insert(name.to_string(), value);
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
    }

    /// Whether `value` matches `schema`, a subschema of the document, as
    /// validation judges it. `None` when that cannot be told apart from the
    /// document: a `$ref` anywhere but into `$defs` or `definitions`, or a
    /// schema that does not compile.
    fn matches(&mut self, schema: &Value, value: &Value) -> Option<bool> {
        let root = self.root;
        let defs_only = *self.defs_only.get_or_insert_with(|| {
            !deeper_than(root, JSON_DEPTH_MAX)
                && refs_into_defs(root.get("$defs"))
                && refs_into_defs(root.get("definitions"))
        });
        if !defs_only || deeper_than(schema, JSON_DEPTH_MAX) || !refs_into_defs(Some(schema)) {
            return None;
        }
        let checker = self
            .checks
            .entry(format!("schema {schema}"))
            .or_insert_with(|| {
                // The subschema under a root that has the document's
                // definitions, so its `$ref`s resolve as in the document.
                let mut document = JsonObject::new();
                for keyword in ["$schema", "$defs", "definitions"] {
                    if let Some(value) = root.get(keyword) {
                        document.insert(keyword.to_string(), value.clone());
                    }
                }
                document.insert("allOf".to_string(), Value::Array(vec![schema.clone()]));
                jsonschema::options()
                    .should_validate_formats(true)
                    .build(&Value::Object(document))
                    .ok()
            });
        checker.as_ref().map(|checker| checker.is_valid(value))
    }

    /// The value of property `key` of the object in `slot`.
    fn child(
        &mut self,
        schema: &Value,
        slot: &Slot<'_>,
        key: &str,
        depth: usize,
        minimal: bool,
    ) -> Value {
        let path = if slot.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", slot.path)
        };
        let input = self.input;
        let echo = if slot.root {
            input.and_then(|input| input.get(key))
        } else {
            None
        };
        let child = Slot {
            name: key,
            path: &path,
            echo,
            root: false,
        };
        self.generate(schema, &child, depth + 1, minimal)
    }
}

/// Decodes `%XX` escapes in a `$ref` fragment; a malformed escape is kept
/// as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escape {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_string())
}

/// Pads `text` with hex digits of `hash` up to `min` characters, then cuts
/// it to `max`.
fn fit_length(mut text: String, min: usize, max: Option<usize>, hash: u64) -> String {
    let min = min.min(STRING_CHARS_MAX);
    let mut length = text.chars().count();
    if length < min {
        let filler = format!("{hash:016x}");
        if length > 0 {
            text.push(' ');
            length += 1;
        }
        text.extend(filler.chars().cycle().take(min.saturating_sub(length)));
    }
    if let Some(max) = max {
        if text.chars().count() > max {
            text = text.chars().take(max).collect();
        }
    }
    text
}

/// A value in a known `format`, or `None` for formats validation ignores.
fn formatted(format: &str, hash: u64) -> Option<String> {
    let date = format!(
        "{:04}-{:02}-{:02}",
        2000 + hash % 25,
        1 + (hash >> 8) % 12,
        1 + (hash >> 16) % 28
    );
    let time = format!(
        "{:02}:{:02}:{:02}",
        (hash >> 24) % 24,
        (hash >> 32) % 60,
        (hash >> 40) % 60
    );
    let short = format!("{:08x}", hash as u32);
    Some(match format {
        "date" => date,
        "date-time" => format!("{date}T{time}Z"),
        "time" => format!("{time}Z"),
        "email" | "idn-email" => format!("mock.{short}@example.com"),
        "uri" | "url" | "iri" | "uri-reference" | "iri-reference" => {
            format!("https://example.com/mock/{short}")
        }
        "uuid" => {
            let low = fnv1a(&[&hash.to_le_bytes()]);
            // Version 4, variant 1: what a reader expects a UUID to look like.
            format!(
                "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
                hash >> 32,
                (hash >> 16) & 0xffff,
                hash & 0xfff,
                8 + (low >> 62),
                (low >> 48) & 0xfff,
                low & 0xffff_ffff_ffff
            )
        }
        "ipv4" => format!("192.0.2.{}", 1 + hash % 254),
        "ipv6" => format!("2001:db8::{:x}", 1 + hash % 0xfffe),
        "hostname" | "idn-hostname" => format!("mock-{:06x}.example.com", hash & 0xff_ffff),
        "duration" => format!("P{}D", 1 + hash % 30),
        "regex" => "^mock$".to_string(),
        "json-pointer" => format!("/mock/{short}"),
        "relative-json-pointer" => "0".to_string(),
        "uri-template" => "https://example.com/mock/{id}".to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_percent_decoded() {
        assert_eq!(percent_decode("/$defs/a%20b"), "/$defs/a b");
        assert_eq!(percent_decode("/bad%zz%"), "/bad%zz%");
    }
}
