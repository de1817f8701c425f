"""Fixed width below K*: the branch and bound over activation patterns and its incumbents."""
