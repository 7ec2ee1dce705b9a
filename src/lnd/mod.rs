//! Placeholder: this module's first code lands with its issue.
