"""Tests of hold.synth: textured objects, the mesh SDF, the offscreen renderer, sequence generation."""
