//! `google.protobuf.Struct` ↔ JSON, in one place.
//!
//! A Struct holds numbers as doubles. The rules:
//! - JSON → Struct: every integer must be exactly representable as a double, i.e. within
//!   ±2^53; a larger one is refused with an error naming it, never rounded silently.
//! - Struct → JSON: a finite double with no fractional part and within ±2^53 becomes a JSON
//!   integer (`1`, not `1.0`); other finite doubles stay floats; NaN and ±infinity are errors.
//! - null, booleans, strings, nested lists and objects map one to one.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as PbValue};
use serde_json::{Map, Number, Value};

/// Largest integer a double holds exactly (2^53).
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// A value that cannot cross the Struct boundary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// An integer beyond ±2^53.
    #[error(
        "{path}: integer {value} cannot be carried exactly by a protobuf double (beyond ±2^53)"
    )]
    IntegerTooLarge {
        /// Where, as a JSON path.
        path: String,
        /// The integer, as text.
        value: String,
    },
    /// NaN or an infinity.
    #[error("{path}: {value} is not a JSON number")]
    NotFinite {
        /// Where.
        path: String,
        /// `NaN`, `inf` or `-inf`.
        value: String,
    },
    /// The top level is not an object.
    #[error("expected a JSON object")]
    NotAnObject,
}

/// A JSON object → Struct.
pub fn json_to_struct(object: &Map<String, Value>) -> Result<Struct, ConvertError> {
    map_to_struct(object, "$")
}

/// Any JSON value that must be an object → Struct.
pub fn value_to_struct(value: &Value) -> Result<Struct, ConvertError> {
    match value {
        Value::Object(map) => json_to_struct(map),
        _ => Err(ConvertError::NotAnObject),
    }
}

/// A Struct → JSON object.
pub fn struct_to_json(s: &Struct) -> Result<Map<String, Value>, ConvertError> {
    struct_to_map(s, "$")
}

fn map_to_struct(object: &Map<String, Value>, path: &str) -> Result<Struct, ConvertError> {
    let mut fields = std::collections::BTreeMap::new();
    for (key, value) in object {
        let child = format!("{path}.{key}");
        fields.insert(key.clone(), to_pb(value, &child)?);
    }
    Ok(Struct { fields })
}

fn to_pb(value: &Value, path: &str) -> Result<PbValue, ConvertError> {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Number(n) => Kind::NumberValue(number_to_f64(n, path)?),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items
                .iter()
                .enumerate()
                .map(|(i, v)| to_pb(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        }),
        Value::Object(map) => Kind::StructValue(map_to_struct(map, path)?),
    };
    Ok(PbValue { kind: Some(kind) })
}

fn number_to_f64(n: &Number, path: &str) -> Result<f64, ConvertError> {
    let too_large = || ConvertError::IntegerTooLarge {
        path: path.to_owned(),
        value: n.to_string(),
    };
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_EXACT_INTEGER {
            return Err(too_large());
        }
        return Ok(i as f64);
    }
    if let Some(u) = n.as_u64() {
        if u > MAX_EXACT_INTEGER {
            return Err(too_large());
        }
        return Ok(u as f64);
    }
    match n.as_f64() {
        Some(f) if f.is_finite() => Ok(f),
        _ => Err(ConvertError::NotFinite {
            path: path.to_owned(),
            value: n.to_string(),
        }),
    }
}

fn struct_to_map(s: &Struct, path: &str) -> Result<Map<String, Value>, ConvertError> {
    s.fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), from_pb(v, &format!("{path}.{k}"))?)))
        .collect()
}

fn from_pb(value: &PbValue, path: &str) -> Result<Value, ConvertError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(f)) => f64_to_json(*f, path)?,
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .iter()
                .enumerate()
                .map(|(i, v)| from_pb(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_map(s, path)?),
    })
}

fn f64_to_json(f: f64, path: &str) -> Result<Value, ConvertError> {
    if !f.is_finite() {
        return Err(ConvertError::NotFinite {
            path: path.to_owned(),
            value: f.to_string(),
        });
    }
    if f.fract() == 0.0 && f.abs() <= MAX_EXACT_INTEGER as f64 {
        // Exact: |f| <= 2^53 and whole, so the cast loses nothing.
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| ConvertError::NotFinite {
            path: path.to_owned(),
            value: f.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn round_trip(v: &Value) -> Value {
        let s = value_to_struct(v).unwrap();
        Value::Object(struct_to_json(&s).unwrap())
    }

    #[test]
    fn whole_numbers_come_back_as_integers() {
        let v = json!({"a": 1, "b": -7, "c": 2.5, "d": null, "e": [1, [2, {"f": true}]], "g": "x",
                       "h": 9007199254740992i64, "i": -9007199254740992i64, "j": 0});
        let back = round_trip(&v);
        assert_eq!(back, v);
        assert!(back["a"].is_i64());
        assert!(back["h"].is_i64());
        // A float that happens to be whole becomes an integer: 1.0 → 1.
        assert_eq!(round_trip(&json!({"x": 1.0}))["x"], json!(1));
        assert!(round_trip(&json!({"x": 1.0}))["x"].is_i64());
        // Whole doubles beyond 2^53 stay floats (they are not exact integers any more).
        assert!(round_trip(&json!({"x": 1e20}))["x"].is_f64());
    }

    #[test]
    fn integers_beyond_2_pow_53_are_refused_not_rounded() {
        for v in [
            json!({"n": 9007199254740993u64}),
            json!({"a": [{"n": -9007199254740993i64}]}),
            json!({"n": u64::MAX}),
        ] {
            let err = value_to_struct(&v).unwrap_err();
            assert!(matches!(err, ConvertError::IntegerTooLarge { .. }), "{err}");
        }
        let err = value_to_struct(&json!({"a": [1, {"n": 9007199254740993u64}]})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "$.a[1].n: integer 9007199254740993 cannot be carried exactly by a protobuf double (beyond ±2^53)"
        );
        assert_eq!(
            value_to_struct(&json!([1])).unwrap_err(),
            ConvertError::NotAnObject
        );
    }

    #[test]
    fn nan_and_infinities_are_errors_not_panics() {
        for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let s = Struct {
                fields: [(
                    "x".to_owned(),
                    PbValue {
                        kind: Some(Kind::NumberValue(f)),
                    },
                )]
                .into_iter()
                .collect(),
            };
            assert!(matches!(
                struct_to_json(&s),
                Err(ConvertError::NotFinite { .. })
            ));
        }
        let empty = Struct {
            fields: [("x".to_owned(), PbValue { kind: None })]
                .into_iter()
                .collect(),
        };
        assert_eq!(struct_to_json(&empty).unwrap()["x"], Value::Null);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-(MAX_EXACT_INTEGER as i64)..=(MAX_EXACT_INTEGER as i64)).prop_map(|i| json!(i)),
            // Non-whole finite floats (whole ones come back as integers by design).
            (-1e12f64..1e12f64)
                .prop_filter("non-whole", |f| f.fract() != 0.0)
                .prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_representable_json_object_round_trips_exactly(
            fields in prop::collection::btree_map(".{0,8}", arb_json(), 0..8)
        ) {
            let v = Value::Object(fields.into_iter().collect());
            prop_assert_eq!(round_trip(&v), v);
        }

        #[test]
        fn whole_doubles_within_2_pow_53_always_come_back_as_integers(
            i in -(MAX_EXACT_INTEGER as i64)..=(MAX_EXACT_INTEGER as i64)
        ) {
            let back = round_trip(&json!({"x": i as f64}));
            prop_assert_eq!(back["x"].as_i64(), Some(i));
        }
    }
}
