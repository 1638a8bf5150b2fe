//! The hyper server: routing, body limits, and the one place where errors become responses.
