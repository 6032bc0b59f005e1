//! Task types (spec 2.3, 2.4 and choices 2, 3): the core text types
//! taskyard can serve, their shapes as Nextcloud describes them, and the
//! check of a schedule's `input` against them.
//!
//! Which types are listed is the config's (`config.rs`): a type is served
//! when it maps to a processor the engine has. Only Text, ListOfTexts,
//! Number and Enum slots exist here: no file slots (choice 4).

use serde_json::{json, Map, Value};

/// A slot's kind (`EShapeType` case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeType {
    Text,
    Enum,
    ListOfTexts,
}

impl ShapeType {
    fn name(self) -> &'static str {
        match self {
            ShapeType::Text => "Text",
            ShapeType::Enum => "Enum",
            ShapeType::ListOfTexts => "ListOfTexts",
        }
    }
}

/// One input or output slot.
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub shape: ShapeType,
}

const fn slot(
    key: &'static str,
    name: &'static str,
    description: &'static str,
    shape: ShapeType,
) -> Slot {
    Slot {
        key,
        name,
        description,
        shape,
    }
}

/// A core task type as Nextcloud defines it: every one here has an
/// `input` Text slot and an `output` Text slot, and some more inputs.
#[derive(Debug, Clone, Copy)]
pub struct TaskType {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// The `input` slot's name and description.
    pub input: [&'static str; 2],
    /// Input slots besides `input`.
    pub more_inputs: &'static [Slot],
    /// The `output` slot's name and description.
    pub output: [&'static str; 2],
}

impl TaskType {
    pub fn input_slots(&self) -> Vec<Slot> {
        let [name, description] = self.input;
        let mut slots = vec![slot("input", name, description, ShapeType::Text)];
        slots.extend_from_slice(self.more_inputs);
        slots
    }

    pub fn output_slots(&self) -> Vec<Slot> {
        let [name, description] = self.output;
        vec![slot("output", name, description, ShapeType::Text)]
    }
}

/// A type of the `input` and `output` slots only.
const fn text_type(
    id: &'static str,
    [name, description]: [&'static str; 2],
    input: [&'static str; 2],
    output: [&'static str; 2],
) -> TaskType {
    TaskType {
        id,
        name,
        description,
        input,
        more_inputs: &[],
        output,
    }
}

/// What a user asks the assistant, in the prompt types.
const PROMPT: &str = "Describe a task that you want the assistant to do or ask a question";

/// Every type taskyard knows; a config may map each to a processor.
pub const TASK_TYPES: &[TaskType] = &[
    text_type(
        "core:text2text",
        [
            "Free text to text prompt",
            "Runs an arbitrary prompt through a language model that returns a reply",
        ],
        ["Prompt", PROMPT],
        ["Generated reply", "The generated text from the assistant"],
    ),
    TaskType {
        id: "core:text2text:chat",
        name: "Chat",
        description: "Chat with the assistant",
        input: ["Chat message", PROMPT],
        more_inputs: &[
            slot(
                "system_prompt",
                "System prompt",
                "Define rules and assumptions that the assistant should follow during the conversation.",
                ShapeType::Text,
            ),
            slot(
                "history",
                "Chat history",
                "The history of chat messages before the current message, starting with a message by the user",
                ShapeType::ListOfTexts,
            ),
        ],
        output: [
            "Response message",
            "The generated response as part of the conversation",
        ],
    },
    text_type(
        "core:text2text:summary",
        ["Summarize", "Summarizes a text"],
        ["Original text", "The original text to summarize"],
        ["Summary", "The generated summary"],
    ),
    text_type(
        "core:text2text:headline",
        ["Generate headline", "Generates a possible headline for a text."],
        ["Original text", "The original text to generate a headline for"],
        ["Headline", "The generated headline"],
    ),
    text_type(
        "core:text2text:topics",
        [
            "Extract topics",
            "Extracts topics from a text and outputs them separated by commas",
        ],
        ["Original text", "The original text to extract topics from"],
        ["Topics", "The list of extracted topics"],
    ),
    TaskType {
        id: "core:text2text:translate",
        name: "Translate",
        description: "Translate text from one language to another",
        input: ["Origin text", "The text to translate"],
        more_inputs: &[
            slot(
                "origin_language",
                "Origin language",
                "The language of the origin text",
                ShapeType::Enum,
            ),
            slot(
                "target_language",
                "Target language",
                "The desired language to translate the origin text in",
                ShapeType::Enum,
            ),
        ],
        output: ["Result", "The translated text"],
    },
    text_type(
        "core:text2text:formalization",
        ["Formalize text", "Takes a text and makes it sound more formal"],
        [
            "Input text",
            "Write a text that you want the assistant to formalize",
        ],
        ["Output text", "The formalized text"],
    ),
    text_type(
        "core:text2text:simplification",
        ["Simplify text", "Takes a text and simplifies it"],
        ["Original text", "The text to simplify"],
        ["Simplified text", "The simplified text"],
    ),
    text_type(
        "core:text2text:reformulation",
        ["Reformulate text", "Takes a text and reformulates it"],
        ["Original text", "The text to reformulate"],
        ["Reformulated text", "The reformulated text"],
    ),
    text_type(
        "core:text2text:proofread",
        ["Proofread", "Proofreads a text and lists corrections"],
        ["Text", "The text to proofread"],
        [
            "Corrections",
            "The corrections that should be made in your text",
        ],
    ),
];

pub fn known(id: &str) -> Option<&'static TaskType> {
    TASK_TYPES.iter().find(|task_type| task_type.id == id)
}

/// One enum choice: its label and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub name: String,
    pub value: String,
}

/// What the provider adds to a type: enum lists and defaults, by slot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provided {
    pub enums: Vec<(&'static str, Vec<Choice>)>,
    pub defaults: Vec<(&'static str, Value)>,
}

impl Provided {
    fn choices(&self, key: &str) -> &[Choice] {
        self.enums
            .iter()
            .find(|(slot, _)| *slot == key)
            .map_or(&[], |(_, choices)| choices.as_slice())
    }

    fn default_of(&self, key: &str) -> Option<&Value> {
        self.defaults
            .iter()
            .find(|(slot, _)| *slot == key)
            .map(|(_, value)| value)
    }
}

fn shapes(slots: &[Slot]) -> Value {
    let mut map = Map::new();
    for slot in slots {
        map.insert(
            slot.key.into(),
            json!({"name": slot.name, "description": slot.description, "type": slot.shape.name()}),
        );
    }
    Value::Object(map)
}

/// A TaskType's 12 keys (spec 2.3); every empty map is `{}`.
pub fn describe(task_type: &TaskType, provided: &Provided) -> Value {
    let mut enums = Map::new();
    for (slot, choices) in &provided.enums {
        let list: Vec<Value> = choices
            .iter()
            .map(|choice| json!({"name": choice.name, "value": choice.value}))
            .collect();
        enums.insert((*slot).into(), Value::Array(list));
    }
    let mut defaults = Map::new();
    for (slot, value) in &provided.defaults {
        defaults.insert((*slot).into(), value.clone());
    }
    json!({
        "name": task_type.name,
        "description": task_type.description,
        "inputShape": shapes(&task_type.input_slots()),
        "inputShapeEnumValues": Value::Object(enums),
        "inputShapeDefaults": Value::Object(defaults),
        "optionalInputShape": {},
        "optionalInputShapeEnumValues": {},
        "optionalInputShapeDefaults": {},
        "outputShape": shapes(&task_type.output_slots()),
        "outputShapeEnumValues": {},
        "optionalOutputShape": {},
        "optionalOutputShapeEnumValues": {},
    })
}

/// Checks `input` against a type's shapes as Nextcloud does (spec 3.2):
/// each slot present and non-null unless it has a default, each value of
/// its shape; then unknown keys are dropped and defaults merged in. The
/// error is the `data.message` of the 400.
pub fn check_input(
    task_type: &TaskType,
    provided: &Provided,
    input: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let slots = task_type.input_slots();
    for slot in &slots {
        match input.get(slot.key) {
            None | Some(Value::Null) => {
                if provided.default_of(slot.key).is_none() {
                    return Err(format!("Missing key: \"{}\"", slot.key));
                }
            }
            Some(value) => check_value(slot, provided, value)
                .map_err(|why| format!("Failed to validate input key \"{}\": {why}", slot.key))?,
        }
    }
    let mut checked = Map::new();
    for slot in &slots {
        match (input.get(slot.key), provided.default_of(slot.key)) {
            (Some(value), _) if !value.is_null() => {
                checked.insert(slot.key.into(), value.clone());
            }
            (_, Some(default)) => {
                checked.insert(slot.key.into(), default.clone());
            }
            _ => {}
        }
    }
    Ok(checked)
}

fn check_value(slot: &Slot, provided: &Provided, value: &Value) -> Result<(), String> {
    match slot.shape {
        ShapeType::Text if !value.is_string() => Err("Non-text item provided for Text slot".into()),
        ShapeType::ListOfTexts => match value {
            Value::Array(items) if items.iter().all(Value::is_string) => Ok(()),
            _ => Err("Non-text list item provided for ListOfTexts slot".into()),
        },
        ShapeType::Enum => {
            let choices = provided.choices(slot.key);
            let given = value.as_str();
            if given.is_some_and(|given| choices.iter().any(|choice| choice.value == given)) {
                return Ok(());
            }
            let expected: Vec<String> = choices
                .iter()
                .map(|choice| format!("\"{}\"", choice.value))
                .collect();
            let got = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Err(format!(
                "Wrong value given for Enum slot. Got \"{got}\", but expected one of the provided enum values: {}",
                expected.join(", ")
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate() -> (&'static TaskType, Provided) {
        let choices = vec![
            Choice {
                name: "English".into(),
                value: "en".into(),
            },
            Choice {
                name: "German".into(),
                value: "de".into(),
            },
        ];
        let provided = Provided {
            enums: vec![
                ("origin_language", choices.clone()),
                ("target_language", choices),
            ],
            defaults: vec![("origin_language", json!("en"))],
        };
        (known("core:text2text:translate").expect("known"), provided)
    }

    #[test]
    fn input_is_checked_trimmed_and_defaulted() {
        let (task_type, provided) = translate();
        let input = json!({"input": "hallo", "target_language": "de", "extra": 1});
        let checked =
            check_input(task_type, &provided, input.as_object().expect("object")).expect("valid");
        assert_eq!(
            Value::Object(checked),
            json!({"input": "hallo", "origin_language": "en", "target_language": "de"})
        );
        let bad = json!({"input": "hallo", "target_language": "xx"});
        assert_eq!(
            check_input(task_type, &provided, bad.as_object().expect("object")),
            Err("Failed to validate input key \"target_language\": Wrong value given for Enum slot. \
                 Got \"xx\", but expected one of the provided enum values: \"en\", \"de\""
                .into())
        );
        let missing = json!({"target_language": "de"});
        assert_eq!(
            check_input(task_type, &provided, missing.as_object().expect("object")),
            Err("Missing key: \"input\"".into())
        );
        let number = json!({"input": 3, "target_language": "de"});
        assert_eq!(
            check_input(task_type, &provided, number.as_object().expect("object")),
            Err(
                "Failed to validate input key \"input\": Non-text item provided for Text slot"
                    .into()
            )
        );
    }
}
