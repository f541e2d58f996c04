//! `google.protobuf.Struct` ↔ JSON, in one place.
//!
//! A Struct holds numbers as doubles. The rules:
//! - JSON → Struct: every integer must be exactly representable as a double, i.e. within
//!   ±2^53; a larger one is refused with an error naming it, never rounded silently.
//! - Struct → JSON: a finite double with no fractional part and within ±2^53 becomes a JSON
//!   integer (`1`, not `1.0`); other finite doubles stay floats; NaN and ±infinity are errors.
//! - null, booleans, strings, nested lists and objects map one to one.
//!
//! The work is linear in the size of the message: the JSON path of a value (`$.a[1].n`) is
//! put together only when that value is refused, from segments collected while the error
//! unwinds. Converting a message of megabytes still takes a noticeable time, so callers on an
//! async runtime move large ones ([`struct_is_large`], [`json_is_large`]) to a blocking thread.

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
    map_to_struct(object).map_err(Located::into_error)
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
    struct_to_map(s).map_err(Located::into_error)
}

/// Most values a message may hold and still count as small (see [`struct_is_large`]).
const SMALL_VALUES: usize = 1024;
/// Most bytes of keys and strings a message may hold and still count as small.
const SMALL_TEXT_BYTES: usize = 64 * 1024;

/// Whether converting `s` is worth moving off an async worker: more than a thousand values or
/// 64 KiB of keys and strings. The walk stops as soon as the answer is known, so asking costs
/// little even for a message of many megabytes.
pub fn struct_is_large(s: &Struct) -> bool {
    let mut budget = Budget::new();
    !budget.take_struct(s)
}

/// [`struct_is_large`] for a JSON object.
pub fn json_is_large(object: &Map<String, Value>) -> bool {
    let mut budget = Budget::new();
    !budget.take_map(object)
}

/// What a small message may still hold; each `take_*` answers false once it is exhausted.
struct Budget {
    values: usize,
    text: usize,
}

impl Budget {
    fn new() -> Self {
        Budget {
            values: SMALL_VALUES,
            text: SMALL_TEXT_BYTES,
        }
    }

    fn take(&mut self, text: usize) -> bool {
        match (self.values.checked_sub(1), self.text.checked_sub(text)) {
            (Some(values), Some(text)) => {
                self.values = values;
                self.text = text;
                true
            }
            _ => false,
        }
    }

    fn take_struct(&mut self, s: &Struct) -> bool {
        s.fields
            .iter()
            .all(|(k, v)| self.take(k.len()) && self.take_pb(v))
    }

    fn take_pb(&mut self, value: &PbValue) -> bool {
        match &value.kind {
            Some(Kind::StringValue(s)) => self.take(s.len()),
            Some(Kind::ListValue(list)) => list.values.iter().all(|v| self.take_pb(v)),
            Some(Kind::StructValue(s)) => self.take_struct(s),
            _ => self.take(0),
        }
    }

    fn take_map(&mut self, object: &Map<String, Value>) -> bool {
        object
            .iter()
            .all(|(k, v)| self.take(k.len()) && self.take_json(v))
    }

    fn take_json(&mut self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.take(s.len()),
            Value::Array(items) => items.iter().all(|v| self.take_json(v)),
            Value::Object(map) => self.take_map(map),
            _ => self.take(0),
        }
    }
}

/// Most bytes of one key shown in an error path; a longer key is cut in the middle
/// (`kkk…[1048512 bytes cut]…kkk`).
const MAX_PATH_KEY: usize = 64;

/// One step of a path: a field name or a list index.
enum Segment {
    Key(String),
    Index(usize),
}

/// A failure on its way up: the segments are collected while unwinding (innermost first), so
/// the path is only ever built for the one value that failed. Building it on the way down, for
/// every value, costs key length × list length.
struct Located {
    error: Failure,
    /// Innermost segment first.
    reversed_path: Vec<Segment>,
}

enum Failure {
    IntegerTooLarge(String),
    NotFinite(String),
}

impl Located {
    fn new(error: Failure) -> Self {
        Located {
            error,
            reversed_path: Vec::new(),
        }
    }

    fn at(mut self, segment: Segment) -> Self {
        self.reversed_path.push(segment);
        self
    }

    fn into_error(self) -> ConvertError {
        let mut path = String::from("$");
        for segment in self.reversed_path.iter().rev() {
            match segment {
                Segment::Key(key) => {
                    path.push('.');
                    path.push_str(&crate::echo(key, MAX_PATH_KEY));
                }
                Segment::Index(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
            }
        }
        match self.error {
            Failure::IntegerTooLarge(value) => ConvertError::IntegerTooLarge { path, value },
            Failure::NotFinite(value) => ConvertError::NotFinite { path, value },
        }
    }
}

fn map_to_struct(object: &Map<String, Value>) -> Result<Struct, Located> {
    let mut fields = std::collections::BTreeMap::new();
    for (key, value) in object {
        let converted = to_pb(value).map_err(|e| e.at(Segment::Key(key.clone())))?;
        fields.insert(key.clone(), converted);
    }
    Ok(Struct { fields })
}

fn to_pb(value: &Value) -> Result<PbValue, Located> {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Number(n) => Kind::NumberValue(number_to_f64(n)?),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items
                .iter()
                .enumerate()
                .map(|(i, v)| to_pb(v).map_err(|e| e.at(Segment::Index(i))))
                .collect::<Result<_, _>>()?,
        }),
        Value::Object(map) => Kind::StructValue(map_to_struct(map)?),
    };
    Ok(PbValue { kind: Some(kind) })
}

fn number_to_f64(n: &Number) -> Result<f64, Located> {
    let too_large = || Located::new(Failure::IntegerTooLarge(n.to_string()));
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
        _ => Err(Located::new(Failure::NotFinite(n.to_string()))),
    }
}

fn struct_to_map(s: &Struct) -> Result<Map<String, Value>, Located> {
    s.fields
        .iter()
        .map(|(k, v)| {
            from_pb(v)
                .map(|v| (k.clone(), v))
                .map_err(|e| e.at(Segment::Key(k.clone())))
        })
        .collect()
}

fn from_pb(value: &PbValue) -> Result<Value, Located> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(f)) => f64_to_json(*f)?,
        Some(Kind::ListValue(list)) => Value::Array(
            list.values
                .iter()
                .enumerate()
                .map(|(i, v)| from_pb(v).map_err(|e| e.at(Segment::Index(i))))
                .collect::<Result<_, _>>()?,
        ),
        Some(Kind::StructValue(s)) => Value::Object(struct_to_map(s)?),
    })
}

fn f64_to_json(f: f64) -> Result<Value, Located> {
    let not_finite = || Located::new(Failure::NotFinite(f.to_string()));
    if !f.is_finite() {
        return Err(not_finite());
    }
    if f.fract() == 0.0 && f.abs() <= MAX_EXACT_INTEGER as f64 {
        // Exact: |f| <= 2^53 and whole, so the cast loses nothing.
        return Ok(Value::Number(Number::from(f as i64)));
    }
    Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(not_finite)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

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

    fn number(f: f64) -> PbValue {
        PbValue {
            kind: Some(Kind::NumberValue(f)),
        }
    }

    /// `{key: [0, 1, …, n - 2, last]}`.
    fn long_key_long_list(key: &str, n: usize, last: PbValue) -> Struct {
        let mut values: Vec<PbValue> = (0..n - 1).map(|i| number(i as f64)).collect();
        values.push(last);
        Struct {
            fields: [(
                key.to_owned(),
                PbValue {
                    kind: Some(Kind::ListValue(ListValue { values })),
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    /// The path used to be built for every value on the way down: a 1 MiB key holding a
    /// 100,000-element list cost 100,000 copies of the key (100 GiB) each way, many seconds of
    /// CPU for one answer. Built only for a failing value, the work is linear in the message.
    #[test]
    fn a_long_key_holding_a_long_list_converts_in_linear_time() {
        let key = "k".repeat(1024 * 1024);
        let s = long_key_long_list(&key, 100_000, number(0.5));
        let started = Instant::now();
        let json = struct_to_json(&s).unwrap();
        let back = json_to_struct(&json).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(back, s);
        assert_eq!(json[&key][99_998], json!(99_998));
        assert!(
            elapsed < Duration::from_secs(1),
            "a 100k-element list under a 1 MiB key took {elapsed:?} both ways"
        );
    }

    #[test]
    fn the_error_path_under_a_long_key_names_the_failing_element() {
        let key = "k".repeat(1024 * 1024);
        let started = Instant::now();
        let s = long_key_long_list(&key, 100_000, number(f64::NAN));
        // The key is shown cut: an error text of megabytes would end up in logs and lists.
        let shown = format!("{}…[1048512 bytes cut]…{}", &key[..32], &key[..32]);
        assert_eq!(
            struct_to_json(&s).unwrap_err(),
            ConvertError::NotFinite {
                path: format!("$.{shown}[99999]"),
                value: "NaN".into()
            }
        );
        let mut items: Vec<Value> = (0..99_999).map(|i| json!(i)).collect();
        items.push(json!({"n": 9007199254740993u64}));
        let v = json!({ "a": [{ key.as_str(): items }] });
        assert_eq!(
            value_to_struct(&v).unwrap_err().to_string(),
            format!(
                "$.a[0].{shown}[99999].n: integer 9007199254740993 cannot be carried exactly by a protobuf double (beyond ±2^53)"
            )
        );
        // Control characters in a key are escaped, not echoed into logs.
        assert_eq!(
            value_to_struct(&json!({"a\nb": [9007199254740993u64]}))
                .unwrap_err()
                .to_string(),
            "$.a\\nb[0]: integer 9007199254740993 cannot be carried exactly by a protobuf double (beyond ±2^53)"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn large_means_many_values_or_much_text() {
        let small = value_to_struct(&json!({"status": "ok", "n": [1, 2, {"x": "y"}]})).unwrap();
        assert!(!struct_is_large(&small));
        assert!(!json_is_large(&struct_to_json(&small).unwrap()));
        let many = long_key_long_list("k", 2_000, number(1.0));
        assert!(struct_is_large(&many));
        assert!(json_is_large(&struct_to_json(&many).unwrap()));
        let text = value_to_struct(&json!({ "s": "x".repeat(100 * 1024) })).unwrap();
        assert!(struct_is_large(&text));
        let long_key = long_key_long_list(&"k".repeat(100 * 1024), 1, number(1.0));
        assert!(struct_is_large(&long_key));
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
