"""Builders of the hidden test sets (FashionMNIST, dogs and cats) and their manifest."""
