//! The Rego input document; tool action/target classification and normalisation.
