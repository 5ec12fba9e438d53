"""Feature aggregation: point-in-time user-day and item-day features, churn labels, training sets."""
