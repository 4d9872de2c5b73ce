"""Reconstruction app: the only place Lightning lives. Entry points: `recon.train.train_command`,
`recon.export.export_command`."""
