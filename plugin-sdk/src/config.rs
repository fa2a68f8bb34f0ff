//! [`NoConfig`]: the `Filter::Config` of a filter that takes no configuration.

use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt;

/// The config of a filter that takes none. Accepts an absent config, `null` and `{}`; any key
/// is an error naming it (`unknown field `nmae`: this plugin takes no config`), so a config
/// written for another plugin, or a typo, is refused at load instead of silently ignored —
/// the strictness `deny_unknown_fields` gives filters that do take config.
///
/// ```
/// use plugin_sdk::{Filter, NoConfig};
/// struct Probe;
/// impl Filter for Probe {
///     type Config = NoConfig;
///     fn new(_: NoConfig) -> Result<Self, String> { Ok(Probe) }
/// }
/// assert!(plugin_sdk::testing::init::<Probe>(serde_json::json!({})).is_ok());
/// assert!(plugin_sdk::testing::init::<Probe>(serde_json::json!({"nmae": 1})).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoConfig;

impl<'de> serde::Deserialize<'de> for NoConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NoConfigVisitor)
    }
}

struct NoConfigVisitor;

impl<'de> Visitor<'de> for NoConfigVisitor {
    type Value = NoConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an empty table (this plugin takes no config)")
    }

    fn visit_unit<E: de::Error>(self) -> Result<NoConfig, E> {
        Ok(NoConfig)
    }

    fn visit_none<E: de::Error>(self) -> Result<NoConfig, E> {
        Ok(NoConfig)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoConfig, A::Error> {
        match map.next_key::<String>()? {
            None => Ok(NoConfig),
            Some(key) => Err(de::Error::custom(format_args!(
                "unknown field `{key}`: this plugin takes no config"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glue::parse_config;

    #[test]
    fn accepts_nothing_and_rejects_any_key() {
        for empty in ["", "null", "{}", " { } "] {
            assert_eq!(parse_config::<NoConfig>(empty), Ok(NoConfig), "{empty:?}");
        }
        let err = parse_config::<NoConfig>(r#"{"nmae": "x"}"#).unwrap_err();
        assert!(
            err.contains("unknown field `nmae`: this plugin takes no config"),
            "{err}"
        );
        for not_a_table in ["[]", "1", "\"x\""] {
            let err = parse_config::<NoConfig>(not_a_table).unwrap_err();
            assert!(err.contains("an empty table"), "{not_a_table}: {err}");
        }
    }
}
