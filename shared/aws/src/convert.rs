//! Attribute values between Capstan's item codec (`capstan_model::AttrValue`) and the
//! DynamoDB SDK (the JSON wire form is `capstan_runtime::wire`).
//!
//! Capstan writes only S, N, BOOL, NULL, L and M. A raw writer may use the set and
//! binary types too; reading never fails on them: sets become lists, binary becomes
//! its base64 text, so one odd attribute cannot make a cluster's tree unreadable.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use capstan_model::item::{AttrValue, Item};

/// An item as the SDK sends it.
pub fn item_to_sdk(item: &Item) -> HashMap<String, AttributeValue> {
    item.iter().map(|(k, v)| (k.clone(), to_sdk(v))).collect()
}

/// An item as the SDK returns it.
pub fn item_from_sdk(item: &HashMap<String, AttributeValue>) -> Item {
    item.iter().map(|(k, v)| (k.clone(), from_sdk(v))).collect()
}

pub fn to_sdk(value: &AttrValue) -> AttributeValue {
    match value {
        AttrValue::S(s) => AttributeValue::S(s.clone()),
        AttrValue::N(n) => AttributeValue::N(n.clone()),
        AttrValue::Bool(b) => AttributeValue::Bool(*b),
        AttrValue::Null => AttributeValue::Null(true),
        AttrValue::L(l) => AttributeValue::L(l.iter().map(to_sdk).collect()),
        AttrValue::M(m) => {
            AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_sdk(v))).collect())
        }
    }
}

pub fn from_sdk(value: &AttributeValue) -> AttrValue {
    match value {
        AttributeValue::S(s) => AttrValue::S(s.clone()),
        AttributeValue::N(n) => AttrValue::N(n.clone()),
        AttributeValue::Bool(b) => AttrValue::Bool(*b),
        AttributeValue::Null(_) => AttrValue::Null,
        AttributeValue::L(l) => AttrValue::L(l.iter().map(from_sdk).collect()),
        AttributeValue::M(m) => AttrValue::M(
            m.iter()
                .map(|(k, v)| (k.clone(), from_sdk(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
        AttributeValue::Ss(ss) => AttrValue::L(ss.iter().cloned().map(AttrValue::S).collect()),
        AttributeValue::Ns(ns) => AttrValue::L(ns.iter().cloned().map(AttrValue::N).collect()),
        AttributeValue::B(b) => AttrValue::S(aws_smithy_types::base64::encode(b.as_ref())),
        AttributeValue::Bs(bs) => AttrValue::L(
            bs.iter()
                .map(|b| AttrValue::S(aws_smithy_types::base64::encode(b.as_ref())))
                .collect(),
        ),
        // A type this SDK version does not know: keep the item readable.
        _ => AttrValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn items_round_trip_through_the_sdk() {
        let mut inner = BTreeMap::new();
        inner.insert(
            "a".to_string(),
            AttrValue::L(vec![AttrValue::N("1".into()), AttrValue::Null]),
        );
        let mut item = Item::new();
        item.insert("pk".into(), AttrValue::S("default#demo".into()));
        item.insert("rv".into(), AttrValue::N("3".into()));
        item.insert("ok".into(), AttrValue::Bool(true));
        item.insert("spec".into(), AttrValue::M(inner));
        assert_eq!(item_from_sdk(&item_to_sdk(&item)), item);
    }

    #[test]
    fn binary_written_by_others_stays_readable() {
        let sdk = AttributeValue::B(aws_smithy_types::Blob::new(b"hi".to_vec()));
        assert_eq!(from_sdk(&sdk), AttrValue::S("aGk=".into()));
    }
}
