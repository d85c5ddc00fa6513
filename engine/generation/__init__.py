"""Generation: a prompt with numbered sources -> an answer whose citations are parsed and checked."""
