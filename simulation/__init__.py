"""Storm simulation with known answers, and scoring correlation against them."""
