//! Items in DynamoDB's JSON wire form (`{"attr": {"S": "..."}}`), the shape Lambda hands
//! stream records in. Capstan writes only S, N, BOOL, NULL, L and M; a raw writer may
//! use the set and binary types too, and reading never fails on them: sets become
//! lists, binary stays its base64 text, so one odd attribute cannot make a cluster's
//! tree unreadable.

use capstan_model::item::{AttrValue, Item};
use serde_json::{Map, Value};
use thiserror::Error;

/// Why a stream record's attribute could not be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConvertError {
    /// Not a DynamoDB attribute value in JSON wire form ({"S": "..."}, {"N": "..."}, ...).
    #[error("attribute {path}: not a DynamoDB attribute value: {found}")]
    NotAnAttribute { path: String, found: String },
}

/// An item in DynamoDB's JSON wire form ({"attr": {"S": "..."}}), as in a stream event.
pub fn item_from_wire(value: &Value) -> Result<Item, ConvertError> {
    let Value::Object(map) = value else {
        return Err(not_attribute("", value));
    };
    map.iter()
        .map(|(k, v)| Ok((k.clone(), attr_from_wire(k, v)?)))
        .collect()
}

/// An item in DynamoDB's JSON wire form.
pub fn item_to_wire(item: &Item) -> Value {
    Value::Object(
        item.iter()
            .map(|(k, v)| (k.clone(), attr_to_wire(v)))
            .collect(),
    )
}

pub fn attr_to_wire(value: &AttrValue) -> Value {
    let (tag, inner) = match value {
        AttrValue::S(s) => ("S", Value::String(s.clone())),
        AttrValue::N(n) => ("N", Value::String(n.clone())),
        AttrValue::Bool(b) => ("BOOL", Value::Bool(*b)),
        AttrValue::Null => ("NULL", Value::Bool(true)),
        AttrValue::L(l) => ("L", Value::Array(l.iter().map(attr_to_wire).collect())),
        AttrValue::M(m) => ("M", item_to_wire(m)),
    };
    let mut out = Map::new();
    out.insert(tag.to_string(), inner);
    Value::Object(out)
}

fn attr_from_wire(path: &str, value: &Value) -> Result<AttrValue, ConvertError> {
    let Value::Object(map) = value else {
        return Err(not_attribute(path, value));
    };
    let mut entries = map.iter();
    let (Some((tag, inner)), None) = (entries.next(), entries.next()) else {
        return Err(not_attribute(path, value));
    };
    let strings = |inner: &Value| -> Option<Vec<String>> {
        inner
            .as_array()?
            .iter()
            .map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    let converted = match (tag.as_str(), inner) {
        ("S", Value::String(s)) | ("B", Value::String(s)) => Some(AttrValue::S(s.clone())),
        ("N", Value::String(n)) => Some(AttrValue::N(n.clone())),
        ("BOOL", Value::Bool(b)) => Some(AttrValue::Bool(*b)),
        ("NULL", _) => Some(AttrValue::Null),
        ("L", Value::Array(items)) => Some(AttrValue::L(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| attr_from_wire(&format!("{path}[{i}]"), v))
                .collect::<Result<_, _>>()?,
        )),
        ("M", Value::Object(m)) => Some(AttrValue::M(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), attr_from_wire(&format!("{path}.{k}"), v)?)))
                .collect::<Result<_, ConvertError>>()?,
        )),
        ("SS", v) | ("BS", v) => {
            strings(v).map(|l| AttrValue::L(l.into_iter().map(AttrValue::S).collect()))
        }
        ("NS", v) => strings(v).map(|l| AttrValue::L(l.into_iter().map(AttrValue::N).collect())),
        _ => None,
    };
    converted.ok_or_else(|| not_attribute(path, value))
}

fn not_attribute(path: &str, value: &Value) -> ConvertError {
    let mut found = value.to_string();
    if found.len() > 80 {
        let mut cut = 80;
        while !found.is_char_boundary(cut) {
            cut -= 1;
        }
        found.truncate(cut);
        found.push('…');
    }
    ConvertError::NotAnAttribute {
        path: path.to_string(),
        found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn items_round_trip_through_the_wire_form() {
        let mut inner = BTreeMap::new();
        inner.insert(
            "a".to_string(),
            AttrValue::L(vec![AttrValue::N("1".into()), AttrValue::Null]),
        );
        let mut item = Item::new();
        item.insert("pk".into(), AttrValue::S("default#demo".into()));
        item.insert("ok".into(), AttrValue::Bool(true));
        item.insert("spec".into(), AttrValue::M(inner));
        assert_eq!(item_from_wire(&item_to_wire(&item)), Ok(item));
    }

    #[test]
    fn sets_and_binary_written_by_others_stay_readable() {
        let wire =
            json!({"tags": {"SS": ["a", "b"]}, "sizes": {"NS": ["1"]}, "blob": {"B": "aGk="}});
        let item = item_from_wire(&wire).unwrap();
        assert_eq!(
            item["tags"],
            AttrValue::L(vec![AttrValue::S("a".into()), AttrValue::S("b".into())])
        );
        assert_eq!(item["blob"], AttrValue::S("aGk=".into()));
    }

    #[test]
    fn a_value_that_is_not_an_attribute_is_an_error_naming_its_path() {
        let err = item_from_wire(&json!({"spec": {"M": {"x": {"Q": 1}}}})).unwrap_err();
        assert!(
            matches!(err, ConvertError::NotAnAttribute { ref path, .. } if path == "spec.x"),
            "{err}"
        );
    }
}
