//! TOML configuration with environment overrides, validated once at start into typed structs.
