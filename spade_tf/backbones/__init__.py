"""Frozen feature networks that training and evaluation both use: `alexnet` (LPIPS features, the
offline perceptual loss), `vgg19` (the official perceptual loss), `inception` (FID's InceptionV3)."""
