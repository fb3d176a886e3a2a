/** Builds the denoiser network a recipe asks for, for data of a given shape. */
import { outputChannels } from '../diffusion.js';
import type { Recipe } from '../recipe.js';
import { RecipeError } from '../errors.js';
import { mlpNetwork } from './mlp.js';
import { unetNetwork } from './unet.js';
import type { Network } from './network.js';

export type { Network } from './network.js';
export { denoiser } from './network.js';

export function createNetwork(model: Recipe['model'], dataShape: number[]): Network {
  const channels = dataShape[dataShape.length - 1]!;
  switch (model.type) {
    case 'mlp':
      if (dataShape.length !== 1) {
        throw new RecipeError('model.type', `mlp takes vector data of shape [D]; the dataset's examples have shape [${dataShape.join(', ')}] (use an image model)`);
      }
      return mlpNetwork({ type: 'mlp', ...model.mlp }, dataShape, outputChannels(model.parameterization, channels));
    case 'unet':
      // unetNetwork refuses non-image data (naming model.type) and sizes the levels cannot halve
      return unetNetwork({ type: 'unet', ...model.unet }, dataShape, outputChannels(model.parameterization, channels));
  }
}
