//! Cross-crate and end-to-end tests of battlement live in `tests/tests/`;
//! this library is empty.
