"""SEANet autoencoder (EnCodec architecture and losses) with MS-STFT GAN training, mono or 32-channel."""
