//! Detectors over tool arguments -> findings (type, severity, JSON pointer, count); never raw values.
