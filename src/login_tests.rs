//! Login flow rules, with a fake prompter, a fixed clock and a real SQLite
//! store in a temporary directory.
