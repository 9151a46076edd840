"""Ranking: topic queries, selection per profile, learning from votes, the trending list."""
