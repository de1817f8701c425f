"""Data and files: built-in toys, file readers (SAELens, dictionary_learning, sparsify), the Linear
Representation Bench, loss-unit conversions."""
